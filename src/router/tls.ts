/**
 * TLS for listeners (spec/router.md §10): one SecureContext per certificate
 * bundle, Unit's SNI selection, `conf_commands` translated to Node's TLS
 * options, session cache and tickets.
 *
 * Compiled when a configuration is applied; a connection only runs the SNI
 * lookup (two Map gets). The handshake itself is tls-accept.ts.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import tls from 'node:tls';

/** The listener's `tls` object (validated). */
export interface TlsConfig {
  certificate: string | string[];
  conf_commands?: Record<string, string>;
  session?: { cache_size?: number; timeout?: number; tickets?: boolean | string | string[] };
}

/** What a TLS listener needs per connection. */
export interface TlsSetup {
  /** Context of the first bundle: used without SNI or when nothing matches. */
  defaultContext: tls.SecureContext;
  /** Unit's selection (§10.2) for a client's server name. */
  select(servername: string | undefined): tls.SecureContext;
  /**
   * Options for `new tls.TLSSocket(socket, { isServer: true, ...options })`;
   * `server` is the session cache when `session.cache_size` > 0.
   */
  options: tls.TLSSocketOptions;
}

/**
 * Server-side session cache (`session.cache_size` > 0, §10.5): the
 * `newSession` / `resumeSession` events Node's TLS sockets raise on their
 * `server`, answered from a map of at most `size` sessions (the oldest goes
 * first), each resumable for `timeout` seconds.
 */
export class SessionCache extends EventEmitter {
  readonly size: number;
  readonly timeout: number;
  private readonly sessions = new Map<string, { data: Buffer; until: number }>();

  constructor(size: number, timeoutSeconds: number) {
    super();
    this.size = size;
    this.timeout = timeoutSeconds * 1000;
    this.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      const key = id.toString('hex');
      this.sessions.delete(key);
      if (this.sessions.size >= this.size) this.sessions.delete(this.sessions.keys().next().value!);
      this.sessions.set(key, { data, until: Date.now() + this.timeout });
      done();
    });
    this.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      const key = id.toString('hex');
      const s = this.sessions.get(key);
      if (s !== undefined && s.until < Date.now()) this.sessions.delete(key);
      done(null, s !== undefined && s.until >= Date.now() ? s.data : null);
    });
  }
}

/**
 * What a compiled setup depends on: the `tls` object and the bundles' text.
 * Equal keys mean the setup of an earlier configuration can be kept (its
 * contexts, session cache and ticket keys survive a reconfiguration).
 */
export function tlsKey(conf: TlsConfig, bundles: Record<string, string>): string {
  const names = Array.isArray(conf.certificate) ? conf.certificate : [conf.certificate];
  return JSON.stringify([conf, names.map((n) => bundles[n] ?? null)]);
}

/** Names a bundle answers to: the leaf's DNS alt names, else its subject CN; lower case. */
export function bundleNames(pem: string): string[] {
  const first = /-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----[\s\S]*?-----END (?:X509 |TRUSTED )?CERTIFICATE-----/.exec(pem);
  if (!first) return [];
  const leaf = new crypto.X509Certificate(first[0]);
  if (leaf.subjectAltName !== undefined) {
    return leaf.subjectAltName.split(/,\s*/).filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4).toLowerCase());
  }
  const cn = /^CN=(.*)$/m.exec(leaf.subject);
  return cn ? [cn[1].toLowerCase()] : [];
}

/**
 * Translate OpenSSL `SSL_CONF_cmd` pairs (§10.3) to Node options.
 * @throws Error naming a command Node cannot honour, so the configuration is refused.
 */
export function confCommands(cmds: Record<string, string>): tls.SecureContextOptions & { honorCipherOrder?: boolean } {
  const out: tls.SecureContextOptions & { honorCipherOrder?: boolean } = {};
  const ciphers: string[] = [];
  let secureOptions = 0;
  for (const [name, value] of Object.entries(cmds)) {
    switch (name.toLowerCase()) {
      case 'cipherstring': case 'ciphersuites': ciphers.push(value); break;
      case 'minprotocol': out.minVersion = protocol(value); break;
      case 'maxprotocol': out.maxVersion = protocol(value); break;
      case 'protocol': Object.assign(out, protocolList(value)); break;
      case 'groups': case 'curves': case 'ecdhparameters': out.ecdhCurve = value; break;
      case 'signaturealgorithms': out.sigalgs = value; break;
      case 'options':
        for (const opt of value.split(',').map((o) => o.trim())) {
          const off = opt.startsWith('-');
          const bare = off ? opt.slice(1) : opt;
          if (bare === 'ServerPreference') out.honorCipherOrder = !off;
          else if (bare === 'SessionTicket') secureOptions |= off ? crypto.constants.SSL_OP_NO_TICKET : 0;
          else if (bare === 'NoRenegotiation') secureOptions |= off ? 0 : crypto.constants.SSL_OP_NO_RENEGOTIATION;
          else throw new Error(`unsupported "Options" value "${opt}" in "conf_commands"`);
        }
        break;
      default:
        throw new Error(`unsupported command "${name}" in "conf_commands"`);
    }
  }
  if (ciphers.length) out.ciphers = ciphers.join(':');
  if (secureOptions) out.secureOptions = secureOptions;
  return out;
}

const PROTOCOLS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;

function protocol(v: string): tls.SecureVersion {
  const p = PROTOCOLS.find((x) => x.toLowerCase() === v.toLowerCase());
  if (!p) throw new Error(`unsupported protocol "${v}" in "conf_commands"`);
  return p;
}

/** `Protocol` lists such as `-TLSv1.2` or `TLSv1.2,TLSv1.3` → the allowed min/max. */
function protocolList(v: string): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion } {
  const allowed = new Set<string>(PROTOCOLS);
  const words = v.split(/[\s,]+/).filter(Boolean);
  if (words.some((w) => !w.startsWith('-'))) allowed.clear();
  for (const w of words) {
    if (w === 'ALL' || w === '-ALL') { for (const p of PROTOCOLS) w === 'ALL' ? allowed.add(p) : allowed.delete(p); continue; }
    const p = protocol(w.replace(/^[-+]/, ''));
    if (w.startsWith('-')) allowed.delete(p); else allowed.add(p);
  }
  const on = PROTOCOLS.filter((p) => allowed.has(p));
  if (on.length === 0) throw new Error(`"Protocol" "${v}" leaves no protocol in "conf_commands"`);
  return { minVersion: on[0], maxVersion: on[on.length - 1] };
}

/** A 48-byte Unit ticket key (name | AES | HMAC) in Node's order (name | HMAC | AES). */
function ticketKey(b64: string): Buffer {
  const k = Buffer.from(b64, 'base64');
  if (k.length !== 48) throw new Error(`only 48-byte session ticket keys are supported (got ${k.length} bytes)`);
  return Buffer.concat([k.subarray(0, 16), k.subarray(32, 48), k.subarray(16, 32)]);
}

/**
 * Compile a listener's `tls` object with the PEM text of each bundle it names.
 * @throws Error (the apply fails, the old configuration keeps serving) when a
 *         bundle is missing or does not load, or an option cannot be honoured.
 */
export function compileTls(conf: TlsConfig, bundles: Record<string, string>): TlsSetup {
  const names = Array.isArray(conf.certificate) ? conf.certificate : [conf.certificate];
  const extra = confCommands(conf.conf_commands ?? {});
  const session = conf.session ?? {};
  const tickets = session.tickets ?? false;
  let secureOptions = extra.secureOptions ?? 0;
  if (tickets === false || (Array.isArray(tickets) && tickets.length === 0)) secureOptions |= crypto.constants.SSL_OP_NO_TICKET;
  const keys = typeof tickets === 'string' ? [tickets] : Array.isArray(tickets) ? tickets : [];
  const ticketKeys = keys.length ? ticketKey(keys[keys.length - 1]) : undefined;
  const cacheSize = session.cache_size ?? 0;
  const cache = cacheSize > 0 ? new SessionCache(cacheSize, session.timeout ?? 300) : null;
  // Sessions are only resumed by the contexts of the listener that made them.
  const sessionIdContext = crypto.createHash('sha256').update(tlsKey(conf, bundles)).digest('hex').slice(0, 32);

  const exact = new Map<string, tls.SecureContext>();
  const wildcard = new Map<string, tls.SecureContext>();
  let first: tls.SecureContext | undefined;
  for (const name of names) {
    const pem = bundles[name];
    if (pem === undefined) throw new Error(`certificate "${name}" is not available`);
    const ctx = tls.createSecureContext({
      ...extra,
      cert: pem,
      key: pem,
      secureOptions,
      honorCipherOrder: extra.honorCipherOrder ?? true,
      sessionTimeout: session.timeout ?? 300,
      sessionIdContext,
      ...(ticketKeys ? { ticketKeys } : {}),
    });
    first ??= ctx;
    for (const n of bundleNames(pem)) {
      const map = n.startsWith('*.') ? wildcard : exact;
      const key = n.startsWith('*.') ? n.slice(2) : n;
      if (!map.has(key)) map.set(key, ctx); // the earliest bundle wins (§10.2)
    }
  }
  const defaultContext = first!;
  const select = (servername: string | undefined): tls.SecureContext => {
    if (!servername || servername.startsWith('.')) return defaultContext;
    const n = servername.toLowerCase();
    const hit = exact.get(n);
    if (hit) return hit;
    const dot = n.indexOf('.');
    return (dot > 0 && wildcard.get(n.slice(dot + 1))) || defaultContext;
  };
  return {
    defaultContext,
    select,
    options: {
      secureContext: defaultContext,
      SNICallback: (servername, cb) => cb(null, select(servername)),
      ALPNProtocols: undefined,
      ...(cache !== null ? { server: cache as unknown as tls.TLSSocketOptions['server'] } : {}),
    },
  };
}
