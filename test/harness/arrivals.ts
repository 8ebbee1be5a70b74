// When a message reached a sink, from the sink's own records: Postfix's
// Maildir file names carry the delivery time (<seconds>.V<dev>I<inode>M<microseconds>.<host>),
// and the rate of a paced stream is read from those times, not from the test's clock.
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';

/** Epoch milliseconds (microsecond precision) at which Postfix's local delivery wrote `file`. */
export async function maildirArrivalMs(file: string): Promise<number> {
  const m = /^(\d+)\.[^.]*M(\d+)/.exec(basename(file));
  if (m) return Number(m[1]) * 1000 + Number(m[2]) / 1000;
  return (await stat(file)).mtimeMs;
}

/**
 * The steady rate of a paced stream (per second): the least-squares slope of
 * arrival number against arrival time, after the first `skip` arrivals (a
 * token bucket's initial burst). Null with fewer than 3 arrivals left.
 */
export function steadyRate(arrivalsMs: readonly number[], skip = 0): number | null {
  const t = [...arrivalsMs].sort((a, b) => a - b).slice(skip);
  if (t.length < 3) return null;
  const n = t.length;
  const meanT = t.reduce((a, b) => a + b, 0) / n;
  const meanI = (n - 1) / 2;
  let num = 0;
  let den = 0;
  t.forEach((ti, i) => {
    num += (ti - meanT) * (i - meanI);
    den += (ti - meanT) ** 2;
  });
  return den === 0 ? null : (num / den) * 1000;
}
