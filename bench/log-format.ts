// --log-format json vs text, side by side in one process: the cost of one log line of the
// relay's busiest kind (the "queued" line, one per accepted message) written synchronously to
// /dev/null, as the relay writes to its stdout. Runs alternate (json, text, json, ...) so both see
// the same machine; prints each run and the medians.
//   node --import tsx bench/log-format.ts [--lines 200000] [--runs 5]
import { openSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { destination } from 'pino';
import { createLogger, type LogFormat } from '../src/lib/log.js';

const { values } = parseArgs({ options: { lines: { type: 'string', default: '200000' }, runs: { type: 'string', default: '5' } } });
const lines = Number(values.lines);
const runs = Number(values.runs);
const devNull = destination({ dest: openSync('/dev/null', 'w'), sync: true });

function run(format: LogFormat): number {
  const log = createLogger({ format, base: { instance: 'corp-relay-0', component: 'relay' } }, devNull);
  const start = process.hrtime.bigint();
  for (let i = 0; i < lines; i++) {
    log.info(
      { id: `01a23cb5dcb6${i.toString(16)}`, messageId: `demo-${i}@partner.example.net`, from: 'sender@partner.example.net', rcpts: 2, size: 48213, client: '203.0.113.7' },
      'queued',
    );
  }
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const seconds: Record<LogFormat, number[]> = { json: [], text: [] };
run('json'); // warm-up: JIT, the destination
run('text');
for (let r = 0; r < runs; r++) {
  for (const f of ['json', 'text'] as const) {
    const s = run(f);
    seconds[f].push(s);
    console.log(`run ${r + 1} ${f.padEnd(4)} ${(lines / s).toFixed(0).padStart(8)} lines/s  ${((s / lines) * 1e6).toFixed(2)} µs/line`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const f of ['json', 'text'] as const) {
  const s = median(seconds[f]);
  console.log(`median ${f.padEnd(4)} ${(lines / s).toFixed(0).padStart(8)} lines/s  ${((s / lines) * 1e6).toFixed(2)} µs/line`);
}
