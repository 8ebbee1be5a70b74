// Append-only audit log (JSON lines): every copy that left for the backup
// (Google) and every message an exclusion rule kept out of it. Write-ahead: a
// "copy-intent" line is on stable storage before a copy starts; "copied-to-backup"
// follows when the backup has it.
import type { Logger } from 'pino';
import { AppendFile } from '../lib/append-file.js';
import type { Destination, SpooledMessage } from './types.js';

export type AuditAction = 'copy-intent' | 'copied-to-backup' | 'excluded';

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
  private readonly file: AppendFile;

  constructor(readonly path: string, private readonly instance: string, private readonly log: Logger) {
    this.file = new AppendFile(path);
  }

  async open(): Promise<void> {
    await this.file.open('a');
  }

  /**
   * Appends one line; lines are written in call order, batched (one write per
   * turn of the event loop). Errors are logged, not thrown: delivery goes on.
   */
  record(message: SpooledMessage, recipients: string[], action: AuditAction, rule?: string, destination: Destination = 'backup'): Promise<void> {
    const rec = this.line(message, recipients, action, rule, destination);
    return this.file.append(`${JSON.stringify(rec)}\n`).catch((e: unknown) => {
      this.log.error({ err: (e as Error).message, audit: rec }, 'audit log write failed');
    });
  }

  /** The intent to copy to the backup, on stable storage (fdatasync, group commit); rejects when it cannot be written. */
  intent(message: SpooledMessage, recipients: string[]): Promise<void> {
    return this.file.append(`${JSON.stringify(this.line(message, recipients, 'copy-intent'))}\n`, { sync: true });
  }

  private line(message: SpooledMessage, recipients: string[], action: AuditAction, rule?: string, destination: Destination = 'backup'): AuditRecord {
    return {
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
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
