/**
 * Listener `forwarded` and legacy `client_ip` (spec/router.md §1.3): when the
 * peer is trusted, take the client address from an X-Forwarded-For-style
 * field and the scheme from a protocol field.
 */
import net from 'node:net';
import type { Request, Peer } from './request.ts';
import { compileAddressPatterns } from '../config/address.ts';

export interface ForwardedRule {
  source: (peer: Peer) => boolean;
  /** Lowercased field names, or null. */
  clientIp: string | null;
  protocol: string | null;
  recursive: boolean;
}

type Obj = Record<string, unknown>;

function rule(o: Obj, clientIp: unknown, protocol: unknown): ForwardedRule {
  return {
    source: compileAddressPatterns(o.source as string | string[]) as (peer: Peer) => boolean,
    clientIp: typeof clientIp === 'string' ? clientIp.toLowerCase() : null,
    protocol: typeof protocol === 'string' ? protocol.toLowerCase() : null,
    recursive: o.recursive === true,
  };
}

/** Compile a listener's `forwarded` and `client_ip` objects, in the order they apply. */
export function compileForwarded(listener: Obj): ForwardedRule[] {
  const out: ForwardedRule[] = [];
  const f = listener.forwarded as Obj | undefined;
  if (f && typeof f === 'object') out.push(rule(f, f.client_ip, f.protocol));
  const c = listener.client_ip as Obj | undefined;
  if (c && typeof c === 'object') out.push(rule(c, c.header, undefined));
  return out;
}

/** An address element of the list: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`; null when invalid or unspecified. */
function parseElement(s: string): Peer | null {
  let host = s;
  let port = 0;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return null;
    host = s.slice(1, end);
    const rest = s.slice(end + 1);
    if (rest !== '') {
      if (!/^:\d{1,5}$/.test(rest)) return null;
      port = Number(rest.slice(1));
    }
    if (net.isIPv6(host) === false) return null;
  } else if (net.isIPv4(s) || net.isIPv6(s)) {
    host = s;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0 || !/^\d{1,5}$/.test(s.slice(colon + 1))) return null;
    host = s.slice(0, colon);
    port = Number(s.slice(colon + 1));
    if (!net.isIPv4(host)) return null;
  }
  const fam = net.isIPv4(host) ? 'IPv4' : net.isIPv6(host) ? 'IPv6' : null;
  if (fam === null || host === '0.0.0.0' || host === '::' || /^0*:0*:0*:0*:0*:0*:0*:0*$/.test(host)) return null;
  return { family: fam, address: host, port };
}

/** Elements of one field value, separated by commas and/or spaces. */
function elements(v: string): string[] {
  return v.split(/[,\s]+/).filter((e) => e !== '');
}

/** Apply the listener's rules to `r` (replaces r's remote address and scheme). */
export function applyForwarded(r: Request, rules: ForwardedRule[]): void {
  for (const f of rules) {
    if (!f.source(r.peer())) continue;
    const h = r.rawHeaders;
    if (f.protocol !== null) {
      for (let i = 0; i < h.length; i += 2) {
        if (h[i + 1] === '' || h[i].toLowerCase() !== f.protocol) continue;
        const v = h[i + 1].toLowerCase();
        if (v === 'http') r.scheme = 'http';
        else if (v === 'https' || v === 'on') r.scheme = 'https';
        break;
      }
    }
    if (f.clientIp === null) continue;
    const fields: string[] = [];
    for (let i = 0; i < h.length; i += 2) {
      if (h[i + 1] !== '' && h[i].toLowerCase() === f.clientIp) fields.push(h[i + 1]);
    }
    if (fields.length === 0) continue;
    let chosen: Peer | null = null;
    if (!f.recursive) {
      const els = elements(fields[fields.length - 1]);
      chosen = els.length ? parseElement(els[els.length - 1]) : null;
    } else {
      let remembered: Peer | null = null;
      walk:
      for (let fi = fields.length - 1; fi >= 0; fi--) {
        const els = elements(fields[fi]);
        for (let ei = els.length - 1; ei >= 0; ei--) {
          const p = parseElement(els[ei]);
          if (p === null) { chosen = remembered; break walk; }
          if (!f.source(p) || (fi === 0 && ei === 0)) { chosen = p; break walk; }
          remembered = p;
        }
      }
      if (chosen === null) chosen = remembered;
    }
    if (chosen !== null) r.setRemote(chosen);
  }
}
