// A private Postfix instance as the Exchange stand-in: its own config and
// queue directories in a temp dir (`postfix -c DIR start|stop`), smtpd on
// 127.0.0.1:<free port> only, final delivery of the test domains into one
// Maildir per recipient (listed recipients) or a per-domain catch-all, so
// tests can count delivered messages per Message-ID. Needs root (the tests run
// as root) and Debian's postfix package.
import { execFile } from 'node:child_process';
import { chownSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './controlplane.js';

export { freePort };

const run = promisify(execFile);

export interface PostfixOptions {
  /** Domains delivered into Maildirs. */
  domains: string[];
  /** Recipients that get their own Maildir; others land in <domain>/catchall/. */
  recipients?: string[];
  /** smtpd port (default: a free one). */
  port?: number;
  /** Address smtpd listens on (default 127.0.0.1; a cluster's node address for pods to reach it). */
  host?: string;
  /** Client networks besides loopback that may relay (mynetworks): the pod network in a cluster. */
  clientNetworks?: string[];
  /** message_size_limit (default 50 MB). */
  messageSizeLimit?: number;
  /**
   * Relay the domains to this next hop ("[127.0.0.1]:2525") instead of
   * delivering them into Maildirs: Postfix as a store-and-forward relay (bench).
   */
  relayhost?: string;
  /** Offer STARTTLS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
  /** Recipients smtpd refuses permanently (554 5.7.1 ... Recipient address rejected). */
  rejectRecipients?: string[];
  /** Recipients smtpd defers at RCPT TO (452 4.2.2 mailbox full), as a working server does for a full mailbox. */
  deferRecipients?: string[];
  /** Extra main.cf lines. */
  extraMainCf?: string[];
}

export interface DeliveredMessage {
  /** Maildir it landed in (recipient address, or catchall@domain). */
  mailbox: string;
  file: string;
  messageId: string | undefined;
  /** The envelope recipient Postfix saw (X-Original-To / Delivered-To header). */
  recipient: string | undefined;
  raw: string;
}

export interface PostfixInstance {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly running: boolean;
  /** Every message delivered so far (reads the Maildirs). */
  messages(): Promise<DeliveredMessage[]>;
  /** Message-ID -> number of Maildir files holding it (one per recipient mailbox). */
  countByMessageId(): Promise<Map<string, number>>;
  /** Waits until `predicate(messages)` holds; throws after timeoutMs with the last count. */
  waitFor(predicate: (msgs: DeliveredMessage[]) => boolean, timeoutMs: number, what?: string): Promise<DeliveredMessage[]>;
  /** The Postfix log (maillog_file). */
  log(): Promise<string>;
  /** Stops smtpd and the rest (an outage); waits until the port refuses connections. */
  stop(): Promise<void>;
  /** Starts again after stop(); waits until the port answers. */
  start(): Promise<void>;
  /** Stops and removes the directory. Safe to call twice and after failures. */
  destroy(): Promise<void>;
}

/** Resolves when a TCP connect to host:port succeeds (up) or is refused (down), per `want`. */
export async function waitForPort(port: number, want: 'up' | 'down', timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up === (want === 'up')) return;
    if (Date.now() > deadline) throw new Error(`port ${port} still ${up ? 'up' : 'down'} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const MASTER_CF = (host: string, port: number) => `
${host}:${port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  const dir = await mkdtemp(join(tmpdir(), 'postfix-exchange-'));
  const port = opts.port ?? (await freePort());
  const host = opts.host ?? '127.0.0.1';
  await chmod(dir, 0o755); // postfix and the delivery uid must traverse it
  const conf = join(dir, 'conf');
  const mail = join(dir, 'mail');
  await mkdir(conf);
  await mkdir(mail);
  await mkdir(join(dir, 'data'));
  await mkdir(join(dir, 'queue'), { mode: 0o755 });
  const { stdout: uidText } = await run('id', ['-u', 'nobody']);
  const uid = Number(uidText.trim());
  chownSync(mail, uid, uid);
  chownSync(join(dir, 'data'), Number((await run('id', ['-u', 'postfix'])).stdout.trim()), 0);
  const mailbox: string[] = [];
  for (const r of opts.recipients ?? []) mailbox.push(`${r} ${r.split('@')[1]}/${r.split('@')[0]}/`);
  for (const d of opts.domains) mailbox.push(`@${d} ${d}/catchall/`);
  await writeFile(join(conf, 'vmailbox'), `${mailbox.join('\n')}\n`);
  await writeFile(
    join(conf, 'rcpt_access'),
    [...(opts.rejectRecipients ?? []).map((r) => `${r} REJECT no such user here\n`), ...(opts.deferRecipients ?? []).map((r) => `${r} 452 4.2.2 mailbox full\n`)].join(''),
  );
  const main = [
    'compatibility_level = 3.6',
    `queue_directory = ${join(dir, 'queue')}`,
    `data_directory = ${join(dir, 'data')}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    `maillog_file = ${join(dir, 'maillog')}`,
    `maillog_file_prefixes = ${dir}`,
    `inet_interfaces = ${host}`,
    'inet_protocols = ipv4',
    'myhostname = exchange.test',
    'mydestination =',
    `mynetworks = ${['127.0.0.0/8', ...(opts.clientNetworks ?? [])].join(' ')}`,
    'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
    `smtpd_recipient_restrictions = check_recipient_access texthash:${join(conf, 'rcpt_access')}, permit_mynetworks, reject`,
    ...(opts.relayhost
      ? [`relay_domains = ${opts.domains.join(' ')}`, `relayhost = ${opts.relayhost}`, 'virtual_mailbox_domains =', 'smtp_destination_concurrency_limit = 20']
      : [`virtual_mailbox_domains = ${opts.domains.join(' ')}`]),
    `virtual_mailbox_base = ${mail}`,
    `virtual_mailbox_maps = texthash:${join(conf, 'vmailbox')}`,
    `virtual_uid_maps = static:${uid}`,
    `virtual_gid_maps = static:${uid}`,
    'virtual_minimum_uid = 100',
    `message_size_limit = ${opts.messageSizeLimit ?? 50 * 1024 * 1024}`,
    'smtpd_banner = $myhostname ESMTP exchange-stand-in',
    'biff = no',
    'virtual_mailbox_limit = 0',
    'smtputf8_enable = yes',
    'in_flow_delay = 0',
    'smtpd_client_connection_count_limit = 0',
    'smtpd_client_connection_rate_limit = 0',
    'default_process_limit = 100',
    'queue_run_delay = 1s',
    'minimal_backoff_time = 1s',
    'maximal_backoff_time = 2s',
    'header_checks =',
    'alias_maps =',
    'alias_database =',
    ...(opts.tls ? [`smtpd_tls_cert_file = ${opts.tls.cert}`, `smtpd_tls_key_file = ${opts.tls.key}`, 'smtpd_tls_security_level = may', 'smtpd_tls_received_header = yes'] : []),
    ...(opts.extraMainCf ?? []),
  ];
  await writeFile(join(conf, 'main.cf'), `${main.join('\n')}\n`);
  await writeFile(join(conf, 'master.cf'), MASTER_CF(host, port));

  let running = false;
  const postfix = async (cmd: string) => {
    try {
      await run('postfix', ['-c', conf, cmd], { timeout: 60_000 });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      const log = (await readFile(join(dir, 'maillog'), 'utf8').catch(() => '')).split('\n').slice(-8).join('\n');
      throw new Error(`postfix -c ${conf} ${cmd} failed: ${err.stderr || err.message}\n${log}`);
    }
  };

  const inst: PostfixInstance = {
    host,
    port,
    dir,
    get running() {
      return running;
    },
    async messages() {
      const out: DeliveredMessage[] = [];
      for (const domain of await readdir(mail).catch(() => [] as string[])) {
        for (const user of await readdir(join(mail, domain)).catch(() => [] as string[])) {
          const newDir = join(mail, domain, user, 'new');
          for (const f of await readdir(newDir).catch(() => [] as string[])) {
            const raw = await readFile(join(newDir, f), 'utf8').catch(() => '');
            const head = raw.slice(0, Math.max(0, raw.indexOf('\n\n')) || raw.length);
            const mid = /^message-id:\s*<?([^>\r\n]*)>?/im.exec(head)?.[1]?.trim();
            const rcpt = /^x-original-to:\s*(\S+)/im.exec(head)?.[1] ?? /^delivered-to:\s*(\S+)/im.exec(head)?.[1];
            out.push({ mailbox: `${user}@${domain}`, file: join(newDir, f), messageId: mid, recipient: rcpt, raw });
          }
        }
      }
      return out;
    },
    async countByMessageId() {
      const m = new Map<string, number>();
      for (const msg of await inst.messages()) if (msg.messageId) m.set(msg.messageId, (m.get(msg.messageId) ?? 0) + 1);
      return m;
    },
    async waitFor(predicate, timeoutMs, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const msgs = await inst.messages();
        if (predicate(msgs)) return msgs;
        if (Date.now() > deadline) throw new Error(`postfix: ${what} not met after ${timeoutMs} ms (${msgs.length} messages delivered)`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async log() {
      return readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
    },
    async stop() {
      if (!running) return;
      await postfix('stop');
      running = false;
      await waitForPort(port, 'down', 30_000, host);
    },
    async start() {
      if (running) return;
      await postfix('start');
      running = true;
      await waitForPort(port, 'up', 30_000, host);
    },
    async destroy() {
      if (running) await postfix('stop').catch(() => undefined);
      running = false;
      // master may need a moment to exit before its queue can go.
      await run('postfix', ['-c', conf, 'abort']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  try {
    await postfix('check');
    await inst.start();
  } catch (e) {
    // KEEP_POSTFIX=1 leaves the directory for a post-mortem.
    if (process.env.KEEP_POSTFIX) await postfix('stop').catch(() => undefined);
    else await inst.destroy();
    throw e;
  }
  return inst;
}
