/**
 * Socket addresses and address patterns of the configuration:
 * listener names and the control address (spec/control-api.md §1.2, §6.2),
 * `proxy` targets and upstream server names (§6.5, §6.7), and the
 * `source`/`destination`/forwarded `source` patterns (router.md §3.5).
 */
import ipaddr from 'ipaddr.js';
import { M } from './messages.ts';

/** An IP listener, control or server address. */
export type TcpAddress = {
  kind: 'tcp';
  /** Canonical address text: `0.0.0.0` for `*`, IPv6 without brackets (`::1`). */
  host: string;
  port: number;
  family: 4 | 6;
  /** `*:P` or `[::]:P`. */
  wildcard: boolean;
};
/** A UNIX-domain socket address (`unix:/path`, `unix:@name`). */
export type UnixAddress = {
  kind: 'unix';
  /** The file path, or for an abstract socket the name after `@`. */
  path: string;
  /** `unix:@name`: a Linux abstract socket (the `@` stands for a leading NUL). */
  abstract: boolean;
};
/** What parseListenerName() and parseProxyAddress() return. */
export type SocketAddress = TcpAddress | UnixAddress;

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_UNIX_PATH = 107;

/**
 * Strict dotted-quad IPv4 (four decimal parts 0–255, up to 3 digits each) →
 * its 32-bit value, or -1. Allocation-free: matchers call it per request.
 */
export function parseIPv4(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > 3) return -1;
      part = part * 10 + (c - 0x30);
      continue;
    }
    if (c !== 0x2e || digits === 0 || part > 255 || ++dots > 3) return -1;
    value = value * 256 + part;
    part = 0;
    digits = 0;
  }
  if (dots !== 3 || digits === 0 || part > 255) return -1;
  return value * 256 + part;
}

/** IPv6 text (no brackets, no zone) → 16 bytes, or undefined. Embedded IPv4 tails are allowed. */
export function parseIPv6(s: string): number[] | undefined {
  if (s.includes('%') || !s.includes(':') || !ipaddr.IPv6.isValid(s)) return undefined;
  return ipaddr.IPv6.parse(s).toByteArray();
}

/** Port text: decimal digits only, within [min, 65535]; -1 otherwise. */
function parsePort(s: string, min: number): number {
  if (!/^[0-9]{1,5}$/.test(s)) return -1;
  const n = Number(s);
  return n >= min && n <= 65535 ? n : -1;
}

/**
 * Parses a socket address as Unit accepts it for listener names, the
 * control address and upstream servers (control-api.md §1.2):
 * `*:P`, `A.B.C.D:P`, `[IPv6]:P` (port 1–65535 mandatory), `unix:/path`,
 * `unix:@name` (Linux). Hostnames are not accepted. Returns null when invalid.
 */
export function parseListenerName(name: string): SocketAddress | null {
  if (name.startsWith('unix:')) {
    const rest = name.slice(5);
    if (rest === '' || Buffer.byteLength(rest, 'utf8') > MAX_UNIX_PATH || rest.includes('\0')) return null;
    if (rest.startsWith('@')) {
      if (rest.length === 1 || process.platform !== 'linux') return null;
      return { kind: 'unix', path: rest.slice(1), abstract: true };
    }
    return { kind: 'unix', path: rest, abstract: false };
  }
  if (name.startsWith('[')) {
    const close = name.indexOf(']:');
    if (close < 0) return null;
    const port = parsePort(name.slice(close + 2), 1);
    const bytes = parseIPv6(name.slice(1, close));
    if (port < 0 || !bytes) return null;
    return {
      kind: 'tcp', host: ipaddr.IPv6.parse(name.slice(1, close)).toString(), port, family: 6,
      wildcard: bytes.every((b) => b === 0),
    };
  }
  const colon = name.lastIndexOf(':');
  if (colon < 0) return null;
  const port = parsePort(name.slice(colon + 1), 1);
  if (port < 0) return null;
  const host = name.slice(0, colon);
  if (host === '*') return { kind: 'tcp', host: '0.0.0.0', port, family: 4, wildcard: true };
  const v4 = parseIPv4(host);
  if (v4 < 0) return null;
  return { kind: 'tcp', host: ipaddr.fromByteArray([v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255]).toString(), port, family: 4, wildcard: false };
}

/**
 * Parses the value of an action's `proxy` (control-api.md §6.5, router.md §4.4):
 * `http://` followed by a socket address as parseListenerName() accepts it.
 * Returns null otherwise (`https://`, hostnames, missing port).
 */
export function parseProxyAddress(value: string): SocketAddress | null {
  if (!value.startsWith('http://')) return null;
  return parseListenerName(value.slice(7));
}

/** The peer or local address a pattern is matched against. */
export interface PeerAddress {
  family: 'IPv4' | 'IPv6' | 'unix';
  address: string;
  port: number;
}

/** Thrown for a bad address pattern; `message` is the validator's detail (`The "address" …`). */
export class AddressPatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressPatternError';
  }
}

type AddressRule = {
  negative: boolean;
  family: 'any' | 'unix' | 4 | 6;
  /** Inclusive bounds (numbers for IPv4, bigints for IPv6); absent = any address of the family. */
  start?: number | bigint;
  end?: number | bigint;
  portStart: number;
  portEnd: number;
};

const bytesToBig = (bytes: readonly number[]): bigint => bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);

/** Unit's integer parse for CIDR prefixes and ports: digits only, -1 otherwise. */
function parseUnsigned(s: string): number {
  return /^[0-9]{1,9}$/.test(s) ? Number(s) : -1;
}

function parsePortPattern(port: string | undefined, rule: AddressRule): void {
  if (port === undefined) return;
  if (port === '') throw new AddressPatternError(M.addressFormat);
  // A dash in the last position is not a range separator (so `80-` is a bad port).
  const dash = port.slice(0, -1).indexOf('-');
  if (dash >= 0) {
    const lo = parseUnsigned(port.slice(0, dash));
    if (lo < 0 || lo > 65535) throw new AddressPatternError(M.addressPort);
    const hi = parseUnsigned(port.slice(dash + 1));
    if (hi < lo || hi > 65535) throw new AddressPatternError(M.addressPort);
    rule.portStart = lo;
    rule.portEnd = hi;
    return;
  }
  const n = parseUnsigned(port);
  if (n < 0 || n > 65535) throw new AddressPatternError(M.addressPort);
  rule.portStart = rule.portEnd = n;
}

/** Parses one address pattern (router.md §3.5) the way Unit's validator reports it. */
function parseAddressPattern(pattern: unknown): AddressRule {
  if (typeof pattern !== 'string') throw new AddressPatternError(M.addressString);
  let s = pattern;
  const rule: AddressRule = { negative: false, family: 'any', portStart: 0, portEnd: 65535 };
  if (s.startsWith('!')) {
    rule.negative = true;
    s = s.slice(1);
  }
  if (s === 'unix') {
    rule.family = 'unix';
    return rule;
  }
  if (s.length < 2) throw new AddressPatternError(M.addressShort);
  if (s.startsWith('*:')) {
    parsePortPattern(s.slice(2), rule);
    return rule;
  }
  const firstColon = s.indexOf(':');
  if (firstColon >= 0 && s.indexOf(':', firstColon + 1) >= 0) {
    rule.family = 6;
    let addr = s;
    let port: string | undefined;
    if (s.startsWith('[')) {
      const close = s.lastIndexOf(']:');
      if (close < 0) throw new AddressPatternError(M.addressFormat);
      addr = s.slice(1, close);
      port = s.slice(close + 2);
    }
    const v6 = (text: string): bigint => {
      const bytes = parseIPv6(text);
      if (!bytes) throw new AddressPatternError(M.addressFormat);
      return bytesToBig(bytes);
    };
    const dash = addr.indexOf('-');
    const slash = addr.indexOf('/');
    if (dash >= 0) {
      rule.start = v6(addr.slice(0, dash));
      rule.end = v6(addr.slice(dash + 1));
      if (rule.start > rule.end) throw new AddressPatternError(M.addressOverlap);
    } else if (slash >= 0) {
      const prefix = parseUnsigned(addr.slice(slash + 1));
      if (prefix < 0 || prefix > 128) throw new AddressPatternError(M.addressCidr);
      const base = v6(addr.slice(0, slash));
      const hostBits = 128n - BigInt(prefix);
      const mask = ((1n << 128n) - 1n) ^ ((1n << hostBits) - 1n);
      if (prefix > 0) {
        rule.start = base & mask;
        rule.end = rule.start | ((1n << hostBits) - 1n);
      }
    } else {
      rule.start = rule.end = v6(addr);
    }
    parsePortPattern(port, rule);
    return rule;
  }
  rule.family = 4;
  let addr = s;
  let port: string | undefined;
  if (firstColon >= 0) {
    addr = s.slice(0, firstColon);
    port = s.slice(firstColon + 1);
  }
  const v4 = (text: string): number => {
    const n = parseIPv4(text);
    if (n < 0) throw new AddressPatternError(M.addressFormat);
    return n;
  };
  const dash = addr.indexOf('-');
  const slash = addr.indexOf('/');
  if (dash >= 0) {
    rule.start = v4(addr.slice(0, dash));
    rule.end = v4(addr.slice(dash + 1));
    if (rule.start > rule.end) throw new AddressPatternError(M.addressOverlap);
  } else if (slash >= 0) {
    const prefix = parseUnsigned(addr.slice(slash + 1));
    if (prefix < 0 || prefix > 32) throw new AddressPatternError(M.addressCidr);
    const base = v4(addr.slice(0, slash));
    if (prefix > 0) {
      const size = 2 ** (32 - prefix);
      rule.start = Math.floor(base / size) * size;
      rule.end = rule.start + size - 1;
    }
  } else {
    rule.start = rule.end = v4(addr);
  }
  parsePortPattern(port, rule);
  return rule;
}

/** Whether `rule` (ignoring its negation) matches a peer whose address was parsed once. */
function ruleMatches(rule: AddressRule, family: 'unix' | 4 | 6 | undefined, value: number | bigint, port: number): boolean {
  if (family === 'unix' || rule.family === 'unix') return family === rule.family;
  if (family === undefined) return false;
  if (rule.family !== 'any' && rule.family !== family) return false;
  if (rule.start !== undefined && (value < rule.start || value > rule.end!)) return false;
  return port >= rule.portStart && port <= rule.portEnd;
}

/**
 * Compiles `source`/`destination`/forwarded `source` patterns (router.md §3.5)
 * into a matcher over a peer address.
 *
 * Patterns: `unix`; `*:P` / `*:P1-P2` (any IPv4/IPv6 with that port);
 * IPv4 `A.B.C.D`, `A-B` ranges, `A/N` CIDR, each optionally `:P` or `:P1-P2`;
 * IPv6 equivalents, with `[…]:P` to add a port; leading `!` negates.
 * IPv4 patterns never match IPv6 peers (v4-mapped included) and the reverse;
 * IP patterns never match UNIX peers. With several patterns: a peer matched
 * by a negative pattern fails; otherwise it matches when any positive
 * pattern matches, or when there are only negative patterns. `[]` matches nothing.
 *
 * @throws AddressPatternError with the validator's detail, e.g.
 *   `The "address" format is invalid.` (control-api.md §6.4).
 */
export function compileAddressPatterns(value: string | readonly unknown[]): (peer: PeerAddress) => boolean {
  const list = typeof value === 'string' ? [value] : value;
  const rules = list.map(parseAddressPattern);
  // Negative patterns are checked first, as Unit orders them.
  const ordered = [...rules.filter((r) => r.negative), ...rules.filter((r) => !r.negative)];
  if (ordered.length === 0) return () => false;
  const hasPositive = ordered.some((r) => !r.negative);
  return (peer) => {
    let family: 'unix' | 4 | 6 | undefined;
    let value: number | bigint = 0;
    if (peer.family === 'unix') {
      family = 'unix';
    } else if (peer.family === 'IPv4') {
      const n = parseIPv4(peer.address);
      if (n >= 0) {
        family = 4;
        value = n;
      }
    } else {
      const zone = peer.address.indexOf('%');
      const bytes = parseIPv6(zone >= 0 ? peer.address.slice(0, zone) : peer.address);
      if (bytes) {
        family = 6;
        value = bytesToBig(bytes);
      }
    }
    for (const rule of ordered) {
      const hit = ruleMatches(rule, family, value, peer.port);
      if (rule.negative) {
        if (hit) return false;
      } else if (hit) {
        return true;
      }
    }
    return !hasPositive;
  };
}
