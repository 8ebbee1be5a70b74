// Self-signed certificates for the tests' TLS servers: the relay's STARTTLS,
// Postfix as Exchange, the fake SMTP and HTTPS servers.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
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

/** A private CA (as an internal company CA): its certificate and key in `dir` as NAME-ca.crt and NAME-ca.key. */
export function privateCa(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}-ca.crt`);
  const key = join(dir, `${name}-ca.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name} internal CA`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/**
 * A server certificate for `cn` issued by `ca` (privateCa), valid for the DNS
 * names and IP addresses in `altNames` ("DNS:exchange.test", "IP:127.0.0.1"):
 * NAME.crt (the leaf only, as many servers send it) and NAME.key in `dir`.
 */
export function certSignedBy(
  ca: { cert: string; key: string },
  dir: string,
  cn: string,
  altNames: string[],
  name = 'tls',
): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`], {
    stdio: 'ignore',
  });
  writeFileSync(ext, `subjectAltName=${altNames.join(',')}\nextendedKeyUsage=serverAuth\n`);
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
