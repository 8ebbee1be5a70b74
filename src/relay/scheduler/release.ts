// A destination answers again after failing at the session level (the probe
// after a suspension, the first answer after a short outage, or the first
// answer since start): every message waiting for a retry there goes now, paced
// by the destination's concurrency window (and by the replay's bucket while one
// runs), instead of each sitting out its own backoff (30 s growing to 600 s)
// while the destination is idle. Postfix leaves that to `postqueue -f` by hand;
// the operator's end of a failover does the same (the replay). A message
// deferred for a reason of its own (a recipient's 452) gets one early attempt
// per outage.
import type { Logger } from 'pino';
import type { Destination } from '../types.js';
import type { DeliveryQueues } from './queues.js';

/** Moves every retry waiting for its time at `dest` into its ready queue; returns how many. */
export function releaseWaiting(queues: DeliveryQueues, dest: Destination, log: Logger): number {
  const released = queues.retryNow(dest);
  if (released > 0) log.info({ destination: dest, released }, 'destination answers again: mail waiting for a retry goes now');
  return released;
}
