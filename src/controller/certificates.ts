/**
 * `/certificates` (spec/control-api.md §9): certificate bundles. A bundle is
 * an uploaded PEM text with exactly one private key and at least one
 * certificate (leaf first, then intermediates), kept verbatim in
 * `<statedir>/certs/NAME`. GET shows the key type and, per certificate, its
 * subject, issuer and validity, read with Node's crypto.X509Certificate.
 * A bundle named by a listener's `tls.certificate` cannot be deleted.
 */
import crypto from 'node:crypto';
import { ERR } from './errors.ts';
import type { StoreKind } from './store.ts';

/** What GET /certificates/NAME shows (§9.3). */
export interface CertificateInfo {
  key: string;
  chain: Array<{
    subject: Record<string, unknown>;
    issuer: Record<string, unknown>;
    validity: { since: string; until: string };
  }>;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
const CERT_TYPES = new Set(['CERTIFICATE', 'X509 CERTIFICATE', 'TRUSTED CERTIFICATE']);

/** Distinguished-name attributes in the order Unit shows them, with their member names. */
const DN_MEMBERS: Array<[string, string]> = [
  ['CN', 'common_name'], ['C', 'country'], ['ST', 'state_or_province'],
  ['L', 'locality'], ['O', 'organization'], ['OU', 'department'],
];

/**
 * Parse a PEM bundle (§9.2). Returns null when it is not acceptable: no key or
 * two keys, no certificate, any other kind of block, or a block that does not parse.
 */
export function parseBundle(pem: string): CertificateInfo | null {
  let key: crypto.KeyObject | null = null;
  const certs: crypto.X509Certificate[] = [];
  for (const m of pem.matchAll(PEM_BLOCK)) {
    const type = m[1];
    const der = Buffer.from(m[2].replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
    try {
      if (type === 'PRIVATE KEY' || /^[A-Z0-9]+ PRIVATE KEY$/.test(type) && type !== 'ENCRYPTED PRIVATE KEY') {
        if (key) return null;
        key = crypto.createPrivateKey({ key: m[0], format: 'pem' });
      } else if (CERT_TYPES.has(type)) {
        // A "TRUSTED CERTIFICATE" carries trust settings after the certificate itself.
        certs.push(new crypto.X509Certificate(type === 'CERTIFICATE' ? m[0] : der));
      } else {
        return null;
      }
    } catch {
      return null;
    }
  }
  if (!key || certs.length === 0) return null;
  return { key: keyText(key), chain: certs.map(certInfo) };
}

/** `RSA (2048 bits)`, `DH (2048 bits)`, `ECDH` or `unknown`, as Unit names keys. */
function keyText(key: crypto.KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa': case 'rsa-pss': return `RSA (${d.modulusLength} bits)`;
    case 'dh': return `DH (${d.modulusLength ?? d.divisorLength ?? 0} bits)`;
    case 'ec': return 'ECDH';
    default: return 'unknown';
  }
}

function names(dn: string, altNames: string | undefined): Record<string, unknown> {
  const attrs = new Map<string, string>();
  for (const line of dn.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !attrs.has(line.slice(0, eq))) attrs.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const out: Record<string, unknown> = {};
  for (const [attr, member] of DN_MEMBERS) {
    if (attrs.has(attr)) out[member] = attrs.get(attr);
    if (attr === 'CN' && altNames !== undefined) {
      out.alt_names = altNames.split(/,\s*/).filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4));
    }
  }
  return out;
}

function certInfo(c: crypto.X509Certificate): CertificateInfo['chain'][number] {
  return {
    subject: names(c.subject, c.subjectAltName),
    issuer: names(c.issuer, undefined),
    validity: { since: c.validFrom, until: c.validTo },
  };
}

/** Bundle names referred to by listeners' `tls.certificate` (string or array). */
export function usedCertificates(config: unknown): string[] {
  const listeners = (config as { listeners?: Record<string, { tls?: { certificate?: unknown } }> } | null)?.listeners;
  const out: string[] = [];
  for (const l of Object.values(listeners ?? {})) {
    const c = l?.tls?.certificate;
    if (typeof c === 'string') out.push(c);
    else if (Array.isArray(c)) out.push(...c.filter((x): x is string => typeof x === 'string'));
  }
  return out;
}

export const CERTIFICATES: StoreKind<CertificateInfo> = {
  dir: 'certs',
  noun: 'certificate',
  parse(_name, data) {
    const info = parseBundle(data.toString('latin1'));
    return info ? { ok: true, item: info } : { ok: false, detail: null };
  },
  show: (info) => info,
  used: usedCertificates,
  errors: {
    name: ERR.certificateName,
    exists: ERR.certificateExists,
    invalid: ERR.certificateInvalid,
    used: ERR.certificateUsed,
    missing: ERR.certificateMissing,
    store: ERR.certificateStore,
  },
  uploaded: 'Certificate chain uploaded.',
  deleted: 'Certificate deleted.',
};
