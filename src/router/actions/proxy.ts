/**
 * `proxy` (spec/router.md §4.4) and the transport upstreams use (§5):
 * HTTP/1.1 to `http://HOST:PORT`, `http://[IPv6]:PORT` or `http://unix:/path`.
 *
 * The request goes out with the client's method and raw target (or the
 * rewritten path plus the original query), the client's fields in order minus
 * hop-by-hop ones; no X-Forwarded-* are added. Both bodies are streamed.
 * Errors before the response header → 502 (504 on timeout); after it, the
 * client connection is closed.
 *
 * Deviation from Unit: connections to upstreams are kept alive and reused
 * (one pool per address) instead of one `Connection: close` connection per request.
 */
import http from 'node:http';
import { pipeline } from 'node:stream';
import type { Request } from '../request.ts';
import type { Handler } from '../action.ts';
import { parseProxyAddress, type SocketAddress } from '../../config/address.ts';
import { escapeUri } from '../uri.ts';

/** 60 s for connecting and for the response header; 30 s between body reads (not configurable in Unit). */
const HEADER_TIMEOUT = 60000;
const READ_TIMEOUT = 30000;

/** Request fields not forwarded (hop-by-hop; Unit drops Connection and Transfer-Encoding). */
const HOP_REQUEST = new Set(['connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'proxy-connection', 'te']);
/** Response fields not relayed (Unit drops Connection, Server, Transfer-Encoding). */
const HOP_RESPONSE = new Set(['connection', 'server', 'transfer-encoding', 'keep-alive']);

/** Connection pools to upstream servers, by address (shared by all configurations). */
const pools = new Map<string, http.Agent>();

/** Where a proxy or upstream server sends requests. */
export class ProxyTarget {
  /** `127.0.0.1:8080`, `[::1]:80`, `unix:/path`: for log lines. */
  readonly name: string;
  private readonly options: http.RequestOptions;

  constructor(addr: SocketAddress, name: string) {
    this.name = name;
    let pool = pools.get(name);
    if (pool === undefined) {
      pool = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
      pools.set(name, pool);
    }
    this.options = addr.kind === 'unix'
      ? { socketPath: addr.abstract ? '\0' + addr.path : addr.path, agent: pool, setHost: false }
      : { host: addr.host, port: addr.port, family: addr.family, agent: pool, setHost: false };
  }

  /** Proxy `r` to this server. */
  forward(r: Request): void {
    const h = r.rawHeaders;
    const headers: string[] = [];
    for (let i = 0; i < h.length; i += 2) {
      if (!HOP_REQUEST.has(h[i].toLowerCase())) headers.push(h[i], h[i + 1]);
    }
    let target = r.target;
    if (r.rewritten) {
      target = r.rewriteEscaped || /[\x00-\x20\x7f-\xff]/.test(r.path) ? escapeUri(r.path) : r.path;
      if (r.query !== '') target += '?' + r.query;
    }
    let up: http.ClientRequest;
    try {
      up = http.request({ ...this.options, method: r.method, path: target, headers });
    } catch (e) {
      r.conn.log.error(`proxy request to ${this.name} failed: ${(e as Error).message}`);
      r.res.sendError(502);
      return;
    }
    const x = new Exchange(r, up, this.name);
    (up as ExchangeCarrier)[kExchange] = x;
    (r.res as unknown as ExchangeCarrier)[kExchange] = x;
    up.setTimeout(HEADER_TIMEOUT);
    up.on('response', onUpstreamResponse);
    up.on('timeout', onUpstreamTimeout);
    up.on('error', onUpstreamError);
    r.res.on('close', onClientClose);
    const body = r.req;
    if (body.complete && body.readableLength === 0) up.end();
    else pipeline(body, up, ignore);
  }
}

const kExchange = Symbol('junction.proxy');
type ExchangeCarrier = { [kExchange]?: Exchange };

function ignore(): void { /* errors reach the request/response 'error' and 'close' listeners */ }

function onUpstreamResponse(this: http.ClientRequest, res: http.IncomingMessage): void {
  (this as ExchangeCarrier)[kExchange]!.onResponse(res);
}
function onUpstreamTimeout(this: http.ClientRequest): void {
  (this as ExchangeCarrier)[kExchange]!.onTimeout();
}
function onUpstreamError(this: http.ClientRequest, e: Error): void {
  (this as ExchangeCarrier)[kExchange]!.onError(e);
}
function onClientClose(this: unknown): void {
  (this as ExchangeCarrier)[kExchange]!.onClientClose();
}

/** One proxied request in flight. */
class Exchange {
  readonly r: Request;
  readonly up: http.ClientRequest;
  readonly name: string;
  timedOut = false;
  answered = false;
  upstream: http.IncomingMessage | null = null;

  constructor(r: Request, up: http.ClientRequest, name: string) {
    this.r = r;
    this.up = up;
    this.name = name;
  }

  onResponse(res: http.IncomingMessage): void {
    const r = this.r;
    if (this.answered) { res.destroy(); return; }
    this.answered = true;
    this.upstream = res;
    this.up.setTimeout(READ_TIMEOUT);
    const f: string[] = [];
    const h = res.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      if (!HOP_RESPONSE.has(h[i].toLowerCase())) f.push(h[i], h[i + 1]);
    }
    r.res.writeStart(res.statusCode ?? 502, f, null);
    pipeline(res, r.res, ignore);
  }

  onTimeout(): void {
    this.timedOut = true;
    this.up.destroy(new Error('timed out'));
  }

  onError(e: Error): void {
    if (this.answered) {
      // Bytes after a complete response (beyond its Content-Length) are dropped, as Unit does.
      if (this.upstream === null || !this.upstream.complete) this.r.res.destroy();
      return;
    }
    this.answered = true;
    const status = this.timedOut ? 504 : 502;
    this.r.conn.log.error(`upstream ${this.name} failed (${(e as NodeJS.ErrnoException).code ?? e.message}) while proxying "${this.r.requestLine}"`);
    this.r.res.sendError(status);
  }

  onClientClose(): void {
    if (!this.r.res.writableFinished) this.up.destroy();
  }
}

/** A compiled `proxy` action. */
export class ProxyHandler implements Handler {
  readonly target: ProxyTarget;
  constructor(target: ProxyTarget) { this.target = target; }
  run(r: Request): null {
    this.target.forward(r);
    return null;
  }
}

/**
 * Parse a server address (`proxy` value without `http://`, or an upstream
 * server name).
 * @throws Error for an invalid address.
 */
export function proxyTarget(address: string): ProxyTarget {
  const a = parseProxyAddress('http://' + address);
  if (a === null) throw new Error(`The "proxy" address is invalid "${address}"`);
  return new ProxyTarget(a, address);
}

/** Compile a `proxy` action. @throws Error for an invalid URL. */
export function compileProxy(url: string): ProxyHandler {
  if (!url.startsWith('http://')) throw new Error(`The "proxy" address is invalid "${url}"`);
  return new ProxyHandler(proxyTarget(url.slice(7)));
}
