/** An SMTP reply smtp-server sends for a refused command or message (`responseCode` is its field). */
export class SmtpError extends Error {
  constructor(readonly responseCode: number, message: string) {
    super(message);
  }
}

/** Counts a refusal in relay_rejected_total{reason}. */
export type Reject = (reason: string) => void;
