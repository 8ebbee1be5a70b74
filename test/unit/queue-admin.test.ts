// The pure parts of the queue on the admin API and of the plugin's output:
// the list filters and their errors, a message's line, the per-relay summary
// and the tables.
import { describe, expect, it } from '@jest/globals';
import { matches, queueFilter, queueItem } from '../../src/relay/control/queue-admin.js';
import type { MessageState } from '../../src/relay/spool/state.js';
import { age, podSummary, renderQueue, type QueueItem } from '../../src/plugin/render.js';

const NOW = Date.parse('2026-12-03T10:00:00Z');

function state(o: Partial<MessageState> & { held?: boolean; attempts?: number } = {}): MessageState {
  return {
    version: 2,
    id: o.id ?? 'm1',
    mailFrom: 'Sender@Partner.example.net',
    rcptTo: ['alice@corp.example.com', 'bob@corp.example.com'],
    messageId: 'x@partner.example.net',
    sha256: 'ab',
    size: 100,
    receivedAt: NOW - 90_000,
    client: { address: '127.0.0.1', helo: 'mx' },
    headers: [],
    deliveries: {
      primary: {
        recipients: { 'alice@corp.example.com': { status: 'pending' }, 'bob@corp.example.com': { status: 'delivered' } },
        attempts: o.attempts ?? 1,
        nextAttemptAt: NOW + 30_000,
        lastError: 'connect ECONNREFUSED',
        ...(o.held ? { hold: { at: NOW - 1000, reason: 'phishing?' } } : {}),
      },
    },
  } as MessageState;
}

describe('queueFilter', () => {
  it('reads the filters and names a bad one with what to use', () => {
    expect(queueFilter(new URLSearchParams('destination=primary&recipient=Alice@Corp.example.com&state=held&minAgeSeconds=60'))).toEqual({
      destination: 'primary',
      recipient: 'alice@corp.example.com',
      state: 'held',
      minAgeSeconds: 60,
    });
    expect(queueFilter(new URLSearchParams('destination=gmail'))).toEqual({ error: 'destination=gmail: use primary or backup' });
    expect(queueFilter(new URLSearchParams('minAgeSeconds=1h'))).toEqual({ error: 'minAgeSeconds=1h: a whole number of seconds' });
    expect(queueFilter(new URLSearchParams('to=x'))).toEqual({ error: 'unknown parameter to: use destination, recipient, sender, state or minAgeSeconds' });
  });
});

describe('queueItem and matches', () => {
  it('shows what still waits where, the state and the age; filters on them', () => {
    const item = queueItem(state(), NOW);
    expect(item).toMatchObject({
      id: 'm1',
      state: 'deferred',
      ageSeconds: 90,
      destinations: { primary: { pending: ['alice@corp.example.com'], attempts: 1, lastError: 'connect ECONNREFUSED' } },
    });
    expect(matches(item, { recipient: 'alice@corp.example.com' })).toBe(true);
    expect(matches(item, { recipient: 'bob@corp.example.com' })).toBe(false); // delivered: not waiting
    expect(matches(item, { destination: 'backup' })).toBe(false);
    expect(matches(item, { sender: 'sender@partner.example.net' })).toBe(true);
    expect(matches(item, { minAgeSeconds: 91 })).toBe(false);
    const held = queueItem(state({ held: true }), NOW);
    expect(held).toMatchObject({ state: 'held', hold: { reason: 'phishing?' } });
    expect(queueItem(state({ attempts: 0 }), NOW).state).toBe('active');
  });
});

describe('the plugin’s output', () => {
  const items = [queueItem(state(), NOW), queueItem(state({ id: 'm2', held: true }), NOW)] as unknown as QueueItem[];

  it('sums each relay: waiting per destination, held, deferred, oldest', () => {
    expect(podSummary({ pod: 'corp-relay-0', items })).toEqual({
      pod: 'corp-relay-0',
      queuedPrimary: 2,
      queuedBackup: 0,
      held: 1,
      deferred: 1,
      oldestSeconds: 90,
    });
    expect(podSummary({ pod: 'corp-relay-1', error: 'not running' })).toMatchObject({ error: 'not running', queuedPrimary: 0 });
    expect([age(59), age(150), age(7300), age(200_000)]).toEqual(['59s', '2m', '2h', '2d']);
  });

  it('lists messages as a table, and relays it could not ask after it', () => {
    const text = renderQueue([{ pod: 'corp-relay-0', items }, { pod: 'corp-relay-1', error: 'not running' }], 'table');
    expect(text.split('\n')).toEqual([
      'RELAY          ID   AGE   STATE      FROM                         WAITING-FOR                       MESSAGE-ID',
      'corp-relay-0   m1   90s   deferred   Sender@Partner.example.net   exchange:alice@corp.example.com   x@partner.example.net',
      'corp-relay-0   m2   90s   held       Sender@Partner.example.net   exchange:alice@corp.example.com   x@partner.example.net',
      'corp-relay-1: not running',
      '',
    ]);
    expect(renderQueue([], 'table')).toBe('no message waiting\n');
  });
});
