// Trust for the TLS clients that reach the primary (the relay's SMTP client,
// the operator's SMTP and HTTPS probes): the system roots plus the CA of
// spec.primary.caBundle / caSecretRef, and what to tell the user when the
// server's certificate chains to neither.
import { rootCertificates } from 'node:tls';

/** Node's `ca` option: the system roots and the extra PEM (Node replaces the roots by `ca`, so both are given). */
export function trustedCa(extraPem: string | undefined): string[] | undefined {
  return extraPem ? [...rootCertificates, extraPem] : undefined;
}

/** OpenSSL's verdicts that mean "no trusted CA issued this certificate". */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
]);

/**
 * For a certificate error that means "signed by no CA we trust": the fix, to
 * append to the error message; '' for any other error (an expired
 * certificate or a wrong host name is not fixed by a CA).
 */
export function untrustedCaHint(err: unknown, extraCa: boolean): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !UNTRUSTED.has(code)) return '';
  return extraCa
    ? ": the server's certificate is signed neither by the CA of spec.primary.caBundle / caSecretRef nor by a system root; check that it holds the CA that issued the server's certificate (and any intermediate the server does not send)"
    : ": the server's certificate is not signed by a trusted CA (the system roots); if Exchange uses an internal CA, set spec.primary.caBundle (PEM) or spec.primary.caSecretRef to it";
}
