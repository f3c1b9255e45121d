/**
 * Per-request state: what routing, variables, actions and applications read.
 * One object per request, created by `http.ts` once the header is parsed and
 * checked; lazily parsed parts (arguments, cookies, request id) are cached here.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { AppRequest } from '../apps/types.ts';
import type { UnitResponse } from './response.ts';
import type { Connection } from './connection.ts';
import type { ListenerConfig, RouterTable, Action } from './table.ts';
import { decodeComponent } from './uri.ts';

/** An address as the shared address-pattern matchers take it. */
export interface Peer { family: 'IPv4' | 'IPv6' | 'unix'; address: string; port: number }

/** A request being routed; also the AppRequest handed to applications. */
export class Request implements AppRequest {
  /** The request as parsed; replaced by a buffered copy once a chunked body is read (body.ts). */
  req: IncomingMessage;
  readonly res: UnitResponse;
  readonly conn: Connection;
  readonly listener: ListenerConfig;
  readonly table: RouterTable;
  /** Request method as received (upper case). */
  readonly method: string;
  /** Raw request target as received, fragment included. */
  readonly target: string;
  /** Decoded, normalised path (byte string); changed by `rewrite`. */
  path = '/';
  /** Raw query (after the first `?`, before any `#`); '' when none. */
  query = '';
  hasQuery = false;
  /** Normalised Host (§2.5); '' when absent. */
  host = '';
  hostPresent = false;
  /** Request fields after discard_unsafe_fields, [name, value, …]. */
  rawHeaders: string[];
  /** Client address after forwarded processing (§1.3). */
  remoteAddr: string;
  remoteFamily: 'IPv4' | 'IPv6' | 'unix';
  remotePort: number;
  readonly localAddr: string;
  readonly localPort: string;
  readonly localFamily: 'IPv4' | 'IPv6' | 'unix';
  /** `https` on a TLS connection; `forwarded` `protocol` may change it (§1.3). */
  scheme: 'http' | 'https';
  /** True when the client speaks HTTP/1.1 or later minor (not 1.0). */
  readonly http11: boolean;
  /** `performance.now()` at request creation (ms). */
  readonly start: number;
  /** Action hops so far (§3.1: > 255 → 500). */
  hops = 0;
  /** The action whose `response_headers` apply (§4.1). */
  current: Action | null = null;
  /** A body follows the header (Content-Length > 0 or chunked). */
  hasBody = false;
  /** Close the connection after this response (header/body errors). */
  forceClose = false;
  /** Set once the request has been logged/counted as finished. */
  done = false;
  /** `$body_bytes_sent`, filled in when the response is complete. */
  bytesSent = 0;
  /** Set by `rewrite`: the proxied target is rebuilt from `path` (§4.4). */
  rewritten = false;
  /** The rewrite text contained `%` escapes (the proxied path is re-escaped). */
  rewriteEscaped = false;
  /** A JS template failed for this request (500): no access-log line (§6.3). */
  jsFailed = false;
  /** A WebSocket handshake (§9): the client socket and the bytes read past the header. */
  upgrade: { socket: Socket; head: Buffer } | null = null;

  private peerCache: Peer | null = null;
  private argList: string[] | null = null;
  private cookieList: string[] | null = null;
  private id: string | null = null;

  constructor(req: IncomingMessage, res: UnitResponse, conn: Connection, rawHeaders: string[]) {
    this.req = req;
    this.res = res;
    this.conn = conn;
    this.listener = conn.listener;
    this.table = conn.listener.table;
    this.method = req.method ?? '';
    this.target = req.url ?? '';
    this.rawHeaders = rawHeaders;
    this.remoteAddr = conn.remoteAddr;
    this.remoteFamily = conn.remoteFamily;
    this.remotePort = conn.remotePort;
    this.localAddr = conn.localAddr;
    this.localPort = conn.localPort;
    this.localFamily = conn.localFamily;
    this.scheme = conn.tls ? 'https' : 'http';
    this.http11 = req.httpVersionMinor !== 0;
    this.start = performance.now();
  }

  /**
   * The request counts as secure: what `match.scheme` tests and applications
   * get as their scheme (wsgi.url_scheme, HTTPS=on, the Node socket's
   * `encrypted`): the connection's TLS, or what `forwarded` said.
   */
  get tls(): boolean {
    return this.scheme === 'https';
  }

  /** Server name given to applications: the normalised host, or `localhost`. */
  get serverName(): string {
    return this.host === '' ? 'localhost' : this.host;
  }

  /** `$request_line`: method, raw target and version as received (undefined when no request line was read). */
  get requestLine(): string | undefined {
    return this.method === '' ? undefined : `${this.method} ${this.target} HTTP/${this.req.httpVersion}`;
  }

  /** `$request_id`: 32 random lowercase hex chars, stable within the request. */
  get requestId(): string {
    return this.id ??= randomBytes(16).toString('hex');
  }

  /** Send the router's error page with `status` if nothing was sent yet; else close (AppRequest). */
  fail(status: number): void {
    this.res.sendError(status);
  }

  /** The client address as `match.source` and forwarded `source` see it. */
  peer(): Peer {
    return this.peerCache ??= { family: this.remoteFamily, address: this.remoteAddr, port: this.remotePort };
  }

  /** Replace the client address (forwarded processing). */
  setRemote(p: Peer): void {
    this.remoteAddr = p.address;
    this.remoteFamily = p.family;
    this.remotePort = p.port;
    this.peerCache = p;
  }

  /** The listener-side address for `match.destination`. */
  local(): Peer {
    return this.conn.localPeer;
  }

  /** Value of the first field named `lower` (lowercase), or undefined. */
  header(lower: string): string | undefined {
    const h = this.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i].length === lower.length && h[i].toLowerCase() === lower) return h[i + 1];
    }
    return undefined;
  }

  /** Value of the last field named `lower` (lowercase), or undefined. */
  lastHeader(lower: string): string | undefined {
    const h = this.rawHeaders;
    for (let i = h.length - 2; i >= 0; i -= 2) {
      if (h[i].length === lower.length && h[i].toLowerCase() === lower) return h[i + 1];
    }
    return undefined;
  }

  /** Query arguments as decoded [name, value, …] (§3.4), parsed once. */
  args(): string[] {
    if (this.argList !== null) return this.argList;
    const out: string[] = [];
    const q = this.query;
    let i = 0;
    while (i <= q.length) {
      let amp = q.indexOf('&', i);
      if (amp < 0) amp = q.length;
      if (amp > i) {
        const eq = q.indexOf('=', i);
        if (eq >= 0 && eq < amp) {
          out.push(decodeComponent(q.slice(i, eq), true), decodeComponent(q.slice(eq + 1, amp), true));
        } else {
          out.push(decodeComponent(q.slice(i, amp), true), '');
        }
      }
      i = amp + 1;
    }
    return this.argList = out;
  }

  /** Cookies as [name, value, …] from every Cookie field (§3.4), parsed once. */
  cookies(): string[] {
    if (this.cookieList !== null) return this.cookieList;
    const out: string[] = [];
    const h = this.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i].length !== 6 || h[i].toLowerCase() !== 'cookie') continue;
      for (const piece of h[i + 1].split(';')) {
        const eq = piece.indexOf('=');
        if (eq < 0) continue;
        out.push(piece.slice(0, eq).replace(/^ +/, ''), piece.slice(eq + 1).replace(/ +$/, ''));
      }
    }
    return this.cookieList = out;
  }
}
