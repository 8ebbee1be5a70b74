// Reading a spool directory: at start (the relay's load) and by hand
// (`mail-continuity queue`, no running relay needed).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { forEachLimit } from '../../lib/for-each-limit.js';
import { readJournal } from './journal.js';
import { readTrailer } from './queue-file.js';
import type { MessageState } from './state.js';

/** The queue: states from the trailers, progress from the journal; files without a valid trailer listed apart. */
export async function readQueue(dir: string): Promise<{ states: MessageState[]; incomplete: string[]; attempts: Map<string, number> }> {
  const queueDir = join(dir, 'queue');
  const files = (await readdir(queueDir).catch(() => [] as string[])).filter((f) => f.endsWith('.msg')).sort();
  const found = new Map<string, MessageState>();
  const incomplete: string[] = [];
  await forEachLimit(files, 32, async (f) => {
    const state = await readTrailer(join(queueDir, f));
    if (state && state.id === f.slice(0, -4)) found.set(f, state);
    else incomplete.push(f);
  });
  const { deliveries, attempts } = await readJournal(join(dir, 'journal.log'));
  const states: MessageState[] = [];
  for (const f of files) {
    const s = found.get(f);
    if (!s) continue;
    const d = deliveries.get(s.id);
    if (d) s.deliveries = d;
    states.push(s);
  }
  return { states, incomplete: incomplete.sort(), attempts };
}

/** Lists a spool directory without a running relay (for `mail-continuity queue`). */
export async function readSpoolDir(dir: string, which: 'queue' | 'dead'): Promise<MessageState[]> {
  if (which === 'queue') return (await readQueue(dir)).states;
  const d = join(dir, 'dead');
  const files = await readdir(d).catch(() => [] as string[]);
  const out: MessageState[] = [];
  for (const f of files.filter((f) => f.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(await readFile(join(d, f), 'utf8')) as MessageState);
    } catch {
      // being written or corrupt: skip in a listing
    }
  }
  return out;
}

/** One message of a spool directory (for `mail-continuity queue show`): its state and the file holding its bytes [0, size). */
export async function readSpoolMessage(dir: string, which: 'queue' | 'dead', id: string): Promise<{ state: MessageState; path: string } | undefined> {
  if (which === 'queue') {
    const path = join(dir, 'queue', `${id}.msg`);
    const state = await readTrailer(path);
    if (!state) return undefined;
    const d = (await readJournal(join(dir, 'journal.log'))).deliveries.get(id);
    if (d) state.deliveries = d;
    return { state, path };
  }
  const text = await readFile(join(dir, 'dead', `${id}.json`), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : { state: JSON.parse(text) as MessageState, path: join(dir, 'dead', `${id}.eml`) };
}
