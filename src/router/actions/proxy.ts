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
 * (one pool per address, upstream-http.ts) instead of one `Connection: close`
 * connection per request. A request that finds its kept-alive connection
 * closed by the server before any answer is sent again once on a new
 * connection, when it has no body and an idempotent method.
 */
import type { Request } from '../request.ts';
import type { Handler } from '../action.ts';
import { parseProxyAddress, type SocketAddress } from '../../config/address.ts';
import { escapeUri } from '../uri.ts';
import { ResponseRelay, upstreamPool, type UpstreamConnection, type UpstreamPool } from '../upstream-http.ts';

/** Request fields not forwarded (hop-by-hop; Unit drops Connection and Transfer-Encoding). */
const HOP_REQUEST = new Set(['connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'proxy-connection', 'te']);
/** Response fields not relayed (Unit drops Connection, Server, Transfer-Encoding). */
const HOP_RESPONSE = new Set(['connection', 'server', 'transfer-encoding', 'keep-alive']);

/** Where a proxy or upstream server sends requests. */
export class ProxyTarget {
  /** `127.0.0.1:8080`, `[::1]:80`, `unix:/path`: for log lines. */
  readonly name: string;
  private readonly pool: UpstreamPool;

  constructor(addr: SocketAddress, name: string) {
    this.name = name;
    this.pool = upstreamPool(name, addr);
  }

  /** Proxy `r` to this server. */
  forward(r: Request): void {
    let target = r.target;
    if (r.rewritten) {
      target = r.rewriteEscaped || /[\x00-\x20\x7f-\xff]/.test(r.path) ? escapeUri(r.path) : r.path;
      if (r.query !== '') target += '?' + r.query;
    }
    let head = r.method + ' ' + target + ' HTTP/1.1\r\n';
    const h = r.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      if (!(name.length <= 17 && HOP_REQUEST.has(name.toLowerCase()))) head += name + ': ' + h[i + 1] + '\r\n';
    }
    new Exchange(r, this, head + 'Connection: keep-alive\r\n\r\n').start();
  }

  /** @internal */
  connection(): UpstreamConnection {
    return this.pool.acquire();
  }
}

/** One proxied request in flight. */
class Exchange extends ResponseRelay {
  readonly target: ProxyTarget;

  constructor(r: Request, target: ProxyTarget, head: string) {
    super(r, head);
    this.target = target;
  }

  protected connection(): UpstreamConnection {
    return this.target.connection();
  }

  protected hop(): ReadonlySet<string> {
    return HOP_RESPONSE;
  }

  protected failed(e: Error, timeout: boolean): void {
    const r = this.r;
    const code = (e as NodeJS.ErrnoException).code;
    r.conn.log.error(`upstream ${this.target.name} failed (${code ?? e.message}) while proxying "${r.requestLine}"`);
    r.res.sendError(timeout ? 504 : 502);
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
