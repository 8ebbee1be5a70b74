// The relay's periodic check of the Gmail side, for the operator's
// BackupReachable condition: every tuning.backupCheckIntervalMs it asks
// Google's token endpoint for an access token (transports/gmail/token-check.ts)
// and keeps the last answer, which GET/PUT /admin/failover returns as
// `backupCheck`. A broken key, a missing delegation or a blocked egress is then
// known before the outage that needs Gmail. Only for method GmailApi: the SMTP
// relay method is judged from its deliveries.
import type { Logger } from 'pino';
import type { BackupCheckReport } from '../../api/relay/admin.js';

export type TokenGrant = () => Promise<Omit<BackupCheckReport, 'checkedAt' | 'subject'>>;

export interface BackupCheckOptions {
  grant: TokenGrant;
  /** The mailbox impersonated (spec.backup.gmail.canaryMailbox), for the report. */
  subject: string | undefined;
  intervalMs: number;
  log: Logger;
  /** Each outcome, for the relay's metric. */
  onResult?: (ok: boolean) => void;
  now?: () => Date;
}

export class BackupCheck {
  private last: BackupCheckReport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: BackupCheckOptions) {}

  /** The first check at once, then every intervalMs. */
  start(): void {
    this.schedule(0);
  }

  /** The last answer (undefined before the first one). */
  snapshot(): BackupCheckReport | undefined {
    return this.last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.check().finally(() => {
        this.running = undefined;
        this.schedule(this.o.intervalMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    const r = await this.o.grant().catch((err: unknown) => ({
      reachable: false as const,
      reason: 'TokenError',
      message: (err as Error).message,
    }));
    const report: BackupCheckReport = {
      ...r,
      checkedAt: (this.o.now?.() ?? new Date()).toISOString(),
      ...(this.o.subject ? { subject: this.o.subject } : {}),
    };
    if (this.last?.reachable !== report.reachable || this.last.reason !== report.reason) {
      this.o.log[report.reachable ? 'info' : 'warn']({ backupCheck: report }, report.reachable ? 'backup check: token granted' : 'backup check: no token');
    }
    this.last = report;
    this.o.onResult?.(report.reachable);
  }
}

/**
 * The check for a relay whose backup is the Gmail API, started (undefined for the SMTP relay
 * method). The token client is loaded at runtime, as the Gmail transport is.
 */
export async function startBackupCheck(
  config: {
    spec: { backup: { gmail: { method: string; canaryMailbox?: string | undefined } } };
    paths: { gmailServiceAccount?: string | undefined };
    google: { tokenUrl?: string | undefined };
    tuning: { backupCheckIntervalMs: number };
  },
  log: Logger,
  onResult: (ok: boolean) => void,
): Promise<BackupCheck | undefined> {
  const { method, canaryMailbox } = config.spec.backup.gmail;
  if (method !== 'GmailApi') return undefined;
  const modulePath = '../transports/gmail/token-check.js';
  const { grantToken } = (await import(modulePath)) as typeof import('../transports/gmail/token-check.js');
  const check = new BackupCheck({
    grant: () =>
      grantToken({
        keyFile: config.paths.gmailServiceAccount,
        tokenUrl: config.google.tokenUrl,
        subject: canaryMailbox,
        timeoutMs: 10_000,
      }),
    subject: canaryMailbox,
    intervalMs: config.tuning.backupCheckIntervalMs,
    log,
    onResult,
  });
  check.start();
  return check;
}
