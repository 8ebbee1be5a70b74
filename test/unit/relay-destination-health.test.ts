import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { DestinationHealth } from '../../src/relay/scheduler/destination-health.js';

function health() {
  const calls = { resumed: 0, recovered: 0 };
  const h = new DestinationHealth('primary', {
    minBackoffMs: 1000,
    maxBackoffMs: 8000,
    random: () => 0.5,
    log: pino({ level: 'silent' }),
    onResume: () => calls.resumed++,
    onRecovered: () => calls.recovered++,
  });
  return { h, calls };
}

describe('DestinationHealth: when what waits may go (release.ts)', () => {
  it('the first answer since start releases (a restart keeps each backoff in the spool); later answers do not', () => {
    const { h, calls } = health();
    h.noteAttempt(false, 0);
    h.noteAttempt(false, 1);
    expect(calls.recovered).toBe(1);
    h.stop();
  });

  it('an answer after a session-level failure releases, below the suspension too', () => {
    const { h, calls } = health();
    h.noteAttempt(false, 0);
    h.noteAttempt(true, 1);
    expect(h.isDown).toBe(false);
    h.noteAttempt(false, 2);
    expect(calls.recovered).toBe(2);
    h.stop();
  });

  it('the probe that answers after a suspension releases once, and ends the suspension', () => {
    const { h, calls } = health();
    h.noteAttempt(false, 0);
    for (let i = 0; i < 5; i++) h.noteAttempt(true, 10 + i);
    expect(h.isDown).toBe(true);
    expect(h.isSuspended(20)).toBe(true);
    h.noteAttempt(false, 5000);
    expect(h.isDown).toBe(false);
    expect(h.isSuspended(5001)).toBe(false);
    expect(calls.recovered).toBe(2);
    h.noteAttempt(false, 5002);
    expect(calls.recovered).toBe(2);
    h.stop();
  });
});
