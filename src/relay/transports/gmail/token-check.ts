// The token grant behind the BackupReachable condition: the relay asks
// Google's token endpoint (the emulator in tests) for an access token with its
// service account key, scope gmail.insert, for the canary mailbox (domain-wide
// delegation) or, without one, for the service account itself. Each check
// reads the key file again and uses a fresh client, so a key revoked at Google
// or replaced in the Secret is noticed at the next check, not when a cached
// token expires an hour later.
import { GMAIL_INSERT_SCOPE } from './transport.js';
import { unreachableBecause, type BackupReachability } from './google-errors.js';
import { readServiceAccount, ServiceAccountClients } from './service-account.js';

export interface TokenCheckOptions {
  /** The service account's JSON key file (paths.gmailServiceAccount). */
  keyFile: string | undefined;
  /** Instead of Google's token URL (loopback only, tests). */
  tokenUrl: string | undefined;
  /** The mailbox to impersonate; undefined: the service account itself. */
  subject: string | undefined;
  timeoutMs: number;
}

export async function grantToken(o: TokenCheckOptions): Promise<BackupReachability> {
  let clients: ServiceAccountClients;
  try {
    clients = new ServiceAccountClients(readServiceAccount(o.keyFile), o.tokenUrl, o.timeoutMs);
  } catch (err) {
    return { reachable: false, reason: 'TokenError', message: (err as Error).message };
  }
  const who = o.subject ?? 'the service account itself';
  try {
    await clients.get(o.subject, GMAIL_INSERT_SCOPE).getAccessToken();
    return { reachable: true, reason: 'TokenGranted', message: `Google granted an access token for ${who} (scope gmail.insert)` };
  } catch (err) {
    return unreachableBecause(err, who, Date.now());
  } finally {
    clients.clear();
  }
}
