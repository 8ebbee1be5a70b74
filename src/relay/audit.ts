// Append-only audit log (JSON lines): every copy that left for the backup
// (Google) and every message an exclusion rule kept out of it.
import { open, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Destination, SpooledMessage } from './types.js';

export type AuditAction = 'copied-to-backup' | 'excluded';

export interface AuditRecord {
  time: string;
  instance: string;
  spoolId: string;
  messageId: string | null;
  sha256: string;
  from: string;
  to: string[];
  destination: Destination;
  action: AuditAction;
  rule: string | null;
}

export class AuditLog {
  private fh: FileHandle | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly path: string, private readonly instance: string, private readonly log: Logger) {}

  async open(): Promise<void> {
    this.fh = await open(this.path, 'a', 0o600);
  }

  /** Appends one line; lines are written in call order. Errors are logged, not thrown: delivery goes on. */
  record(message: SpooledMessage, recipients: string[], action: AuditAction, rule?: string, destination: Destination = 'backup'): Promise<void> {
    const rec: AuditRecord = {
      time: new Date().toISOString(),
      instance: this.instance,
      spoolId: message.id,
      messageId: message.messageId ?? null,
      sha256: message.sha256,
      from: message.mailFrom,
      to: recipients,
      destination,
      action,
      rule: rule ?? null,
    };
    const line = `${JSON.stringify(rec)}\n`;
    this.chain = this.chain.then(async () => {
      try {
        await this.fh?.write(line);
      } catch (e) {
        this.log.error({ err: (e as Error).message, audit: rec }, 'audit log write failed');
      }
    });
    return this.chain;
  }

  async close(): Promise<void> {
    await this.chain;
    await this.fh?.close();
    this.fh = undefined;
  }
}
