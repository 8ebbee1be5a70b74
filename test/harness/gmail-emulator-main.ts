// Runs the Gmail emulator as a process (for `make demo`):
//   tsx test/harness/gmail-emulator-main.ts --port 0 --users alice@corp.example.org,bob@corp.example.org \
//       --key-out /tmp/sa.json [--latency-ms 300 | --latency-ms 300-800]
// Prints one JSON line {url, tokenUrl, rootUrl, keyFile, clientEmail, users} when ready; SIGTERM closes it.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { startGmailEmulator } from './gmail-emulator.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      users: { type: 'string', default: '' },
      'key-out': { type: 'string' },
      'quota-per-minute': { type: 'string' },
      'latency-ms': { type: 'string' },
      'delegated-scopes': { type: 'string' },
    },
    strict: true,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: not a port: ${values.port}`);
  const quota = values['quota-per-minute'] === undefined ? undefined : Number(values['quota-per-minute']);
  if (quota !== undefined && !(quota > 0)) throw new Error('--quota-per-minute: must be a positive number of units');
  const latency = values['latency-ms'] === undefined ? undefined : /^(\d+)(?:-(\d+))?$/.exec(values['latency-ms']);
  if (latency === null) throw new Error('--latency-ms: a delay in ms, or a range such as 300-800');
  const users = values.users
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  const emulator = await startGmailEmulator({
    host: values.host,
    port,
    users,
    ...(quota !== undefined ? { quotaPerMinute: quota } : {}),
    ...(latency ? { latencyMs: latency[2] === undefined ? Number(latency[1]) : { min: Number(latency[1]), max: Number(latency[2]) } } : {}),
    ...(values['delegated-scopes'] ? { delegatedScopes: values['delegated-scopes'].split(',') } : {}),
  });
  const keyFile = values['key-out'];
  if (keyFile) await writeFile(keyFile, emulator.serviceAccount.keyJson, { mode: 0o600 });
  process.stdout.write(
    JSON.stringify({
      url: emulator.url,
      tokenUrl: emulator.tokenUrl,
      rootUrl: emulator.rootUrl,
      keyFile: keyFile ?? null,
      clientEmail: emulator.serviceAccount.key.client_email,
      users: [...emulator.users],
    }) + '\n',
  );
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    void emulator.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`gmail-emulator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
