// spec.primary.caBundle / caSecretRef on the operator's side: the Secret is
// referenced (a missing one stalls, naming the field), the probes get its PEM,
// and a certificate error says what to do about the CA.
import { describe, expect, it } from '@jest/globals';
import { rootCertificates } from 'node:tls';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { trustedCa, untrustedCaHint } from '../../src/lib/tls-trust.js';
import { probedPrimary, referencedSecrets, secretProblems } from '../../src/operator/reconcile/secrets.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const withCaSecret = () => {
  const s = validSpec();
  s.primary.caSecretRef = { name: 'corp-ca' };
  return MailContinuitySpec.parse(s);
};

describe('primary CA', () => {
  it('references the caSecretRef key, and a missing Secret or key names the field', () => {
    const spec = withCaSecret();
    const refs = referencedSecrets(spec).filter((r) => r.field === 'spec.primary.caSecretRef');
    expect(refs).toEqual([{ field: 'spec.primary.caSecretRef', name: 'corp-ca', keys: ['ca.crt'] }]);
    expect(secretProblems(refs, new Map())).toEqual([{ field: 'spec.primary.caSecretRef', name: 'corp-ca' }]);
    expect(secretProblems(refs, new Map([['corp-ca', { data: { 'tls.crt': 'eA==' } }]]))).toEqual([
      { field: 'spec.primary.caSecretRef', name: 'corp-ca', missingKey: 'ca.crt' },
    ]);
  });

  it('gives the probes the PEM of the Secret key as caBundle', () => {
    const spec = withCaSecret();
    const secrets = new Map([['corp-ca', { data: { 'ca.crt': Buffer.from(PEM).toString('base64') } }]]);
    expect(probedPrimary(spec, secrets).caBundle).toBe(PEM);
    expect(probedPrimary(spec, new Map()).caBundle).toBeUndefined();
    const inline = MailContinuitySpec.parse({ ...validSpec(), primary: { ...validSpec().primary, caBundle: PEM } });
    expect(probedPrimary(inline, new Map())).toBe(inline.primary);
  });

  it('trusts the system roots and the CA given', () => {
    expect(trustedCa(undefined)).toBeUndefined();
    expect(trustedCa(PEM)).toEqual([...rootCertificates, PEM]);
  });

  it('says what to do for an untrusted issuer only', () => {
    const err = (code: string) => Object.assign(new Error('x'), { code });
    expect(untrustedCaHint(err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), false)).toMatch(/set spec\.primary\.caBundle \(PEM\) or spec\.primary\.caSecretRef/);
    expect(untrustedCaHint(err('SELF_SIGNED_CERT_IN_CHAIN'), true)).toMatch(/signed neither by the CA of spec\.primary\.caBundle/);
    expect(untrustedCaHint(err('CERT_HAS_EXPIRED'), false)).toBe('');
    expect(untrustedCaHint(err('ERR_TLS_CERT_ALTNAME_INVALID'), true)).toBe('');
  });
});
