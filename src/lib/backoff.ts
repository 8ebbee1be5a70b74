// Exponential backoff, one formula for every retry in the relay: the
// scheduler's deferrals and destination suspensions, the Gmail transport's
// retry hint when Google does not say when.

/**
 * minMs * 2^(attempts-1), capped at maxMs. With `random`, equal jitter: half
 * of that delay fixed, half random (so retries of many messages spread out).
 */
export function backoffMs(attempts: number, minMs: number, maxMs: number, random?: () => number): number {
  const exp = Math.min(maxMs, minMs * 2 ** Math.max(0, Math.min(30, attempts - 1)));
  return random ? Math.round(exp / 2 + (random() * exp) / 2) : exp;
}
