// Self-signed certificates for the tests' TLS servers: the relay's STARTTLS,
// Postfix as Exchange, the fake SMTP and HTTPS servers.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Writes a self-signed RSA certificate for `cn` and its key into `dir` as NAME.crt and NAME.key; returns their paths. */
export function selfSignedCert(dir: string, cn: string, name = 'tls'): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`], {
    stdio: 'ignore',
  });
  return { cert, key };
}
