// This replica's share of each Gmail mailbox's quota (PUT /admin/failover
// gmailUnitsPerMinute), kept on the spool volume so that a relay that
// restarts (a rolling update restarts them all) spends its last share from
// its first import instead of the whole budget until the operator's next
// sync. A replica that never heard a share (a new one) starts with the whole
// budget until then.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Transport } from '../types.js';

const FILE = 'gmail-quota-share';

/** The share last told, or undefined (none kept, or not a number). */
export async function loadQuotaShare(spoolDir: string): Promise<number | undefined> {
  const text = await readFile(join(spoolDir, FILE), 'utf8').catch(() => undefined);
  const n = text === undefined ? NaN : Number(text.trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

async function saveQuotaShare(spoolDir: string, n: number): Promise<void> {
  const tmp = join(spoolDir, `${FILE}.tmp`);
  await writeFile(tmp, `${n}\n`);
  await rename(tmp, join(spoolDir, FILE));
}

/**
 * The admin endpoint's handle on the backup transport's share (GmailApi only), with the last
 * share kept applied at once; undefined for a transport without a per-mailbox quota.
 */
export async function quotaShareOf(
  backup: Transport,
  spoolDir: string,
  log: Logger,
): Promise<{ get(): number; set(unitsPerMinute: number): void } | undefined> {
  const { mailboxQuota, setMailboxQuota } = backup;
  if (!mailboxQuota || !setMailboxQuota) return undefined;
  const kept = await loadQuotaShare(spoolDir);
  if (kept !== undefined) {
    setMailboxQuota.call(backup, kept);
    log.info({ gmailUnitsPerMinute: mailboxQuota.call(backup) }, 'Gmail quota share kept from the last run');
  }
  let saved = kept;
  return {
    get: () => mailboxQuota.call(backup),
    set: (n) => {
      setMailboxQuota.call(backup, n);
      const now = mailboxQuota.call(backup);
      if (now === saved) return; // the operator repeats it at every sync: written only when it changes
      saved = now;
      void saveQuotaShare(spoolDir, now).catch((e: unknown) =>
        log.warn({ err: (e as Error).message }, 'could not keep the Gmail quota share on the spool volume'),
      );
    },
  };
}
