// BackupReachable from the relays' token grants: the tally's part (pure), the
// condition it gives (a refusal is False at once and names what to fix, grants
// are True before any mail went to Gmail), and the relay's periodic check.
import { describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import type { BackupCheckReport } from '../../src/api/relay/admin.js';
import { backupReachableCondition, tokenGrants } from '../../src/operator/failover/backup.js';
import { BackupCheck } from '../../src/relay/control/backup-check.js';
import { waitFor } from '../harness/wait.js';

const CANARY = 'mc-canary@corp.example.org';
const granted: BackupCheckReport = {
  reachable: true,
  reason: 'TokenGranted',
  message: 'granted',
  checkedAt: '2026-12-03T10:00:00.000Z',
  subject: CANARY,
};
const refused: BackupCheckReport = {
  reachable: false,
  reason: 'KeyRejected',
  message: 'Gmail 400: Invalid JWT Signature.',
  checkedAt: '2026-12-03T10:00:00.000Z',
  subject: CANARY,
};
const backup = { up: 0, down: 0, unknown: 2 };

describe('tokenGrants', () => {
  it('counts grants and keeps refusals without times (a new grant alone changes nothing)', () => {
    expect(tokenGrants([undefined, undefined])).toEqual({});
    expect(tokenGrants([granted, refused, undefined])).toEqual({
      tokenGrants: {
        granted: 1,
        refused: [{ reason: 'KeyRejected', message: 'Gmail 400: Invalid JWT Signature.', subject: CANARY }],
        subject: CANARY,
      },
    });
    expect(tokenGrants([granted])).toEqual(tokenGrants([{ ...granted, checkedAt: '2026-12-03T10:05:00.000Z' }]));
  });
});

describe('backupReachableCondition from token grants', () => {
  it('is True from grants alone, before any delivery to Gmail, naming the mailbox', () => {
    expect(backupReachableCondition({ answered: 2, backup, ...tokenGrants([granted, granted]) })).toMatchObject({
      status: 'True',
      reason: 'TokenGranted',
      message: expect.stringContaining(CANARY),
    });
    const self = backupReachableCondition({ answered: 1, backup, ...tokenGrants([{ ...granted, subject: undefined }]) });
    expect(self.message).toContain('the service account itself (set spec.backup.gmail.canaryMailbox');
  });

  it('is False as soon as one relay is refused, with the reason and the fix, whatever deliveries said', () => {
    const c = backupReachableCondition({ answered: 2, backup: { up: 2, down: 0, unknown: 0 }, ...tokenGrants([granted, refused]) });
    expect(c).toMatchObject({ status: 'False', reason: 'KeyRejected' });
    expect(c.message).toBe(
      `1 of 2 relays got no access token from Google's token endpoint for ${CANARY} (scope gmail.insert): Gmail 400: Invalid JWT Signature.; the service account key was revoked or is not the service account's: create a new JSON key and put it in the Secret of spec.backup.gmail.serviceAccountSecretRef`,
    );
    const delegation = backupReachableCondition({ answered: 1, backup, ...tokenGrants([{ ...refused, reason: 'DelegationMissing' }]) });
    expect(delegation.message).toContain('grant domain-wide delegation for https://www.googleapis.com/auth/gmail.insert');
  });

  it('without grants (the SMTP relay method), judges from deliveries as before', () => {
    expect(backupReachableCondition({ answered: 1, backup: { up: 1, down: 0, unknown: 0 } })).toMatchObject({ reason: 'BackupAnswered' });
    expect(backupReachableCondition({ answered: 1, backup })).toMatchObject({ status: 'Unknown' });
  });
});

describe('BackupCheck', () => {
  it('grants at once, then every interval, and reports the last answer with its time and mailbox', async () => {
    let n = 0;
    const results: boolean[] = [];
    const check = new BackupCheck({
      grant: async () => {
        n++;
        if (n === 3) throw new Error('socket hang up');
        return n < 3 ? { reachable: true, reason: 'TokenGranted', message: 'ok' } : { reachable: false, reason: 'KeyRejected', message: 'no' };
      },
      subject: CANARY,
      intervalMs: 100,
      log: pino({ level: 'silent' }),
      onResult: (ok) => results.push(ok),
    });
    expect(check.snapshot()).toBeUndefined();
    check.start();
    await waitFor('the first grant', () => check.snapshot()?.reachable === true, 2000, 10);
    expect(check.snapshot()).toMatchObject({ subject: CANARY, checkedAt: expect.stringMatching(/^\d{4}-/) });
    await waitFor('an error counts as no token', () => check.snapshot()?.reason === 'TokenError', 2000, 10);
    expect(check.snapshot()?.message).toBe('socket hang up');
    await waitFor('a refusal', () => check.snapshot()?.reason === 'KeyRejected', 2000, 10);
    await check.stop();
    const after = n;
    await new Promise((r) => setTimeout(r, 250));
    expect(n).toBe(after);
    expect(results.slice(0, 4)).toEqual([true, true, false, false]);
  });
});
