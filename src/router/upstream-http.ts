/**
 * HTTP/1.1 connections to proxied servers (spec/router.md §4.4, §5), kept
 * alive and reused: one pool of idle connections per server address, shared
 * by every configuration.
 *
 * Responses are parsed by Node's own HTTP parser (llhttp, the one node:http
 * uses), fed straight from the socket in native code (`consume`), as
 * node:http's server does for requests: no stream machinery, no `http.Agent`,
 * no `ClientRequest` per request. A request is one write of its header (and
 * the client's body, streamed); the response comes back through the
 * parser's callbacks to the `UpstreamUser` the connection serves.
 *
 * `BodyRelay` passes a response body on to the client: the first piece is
 * held until the read that brought it is parsed, so that a response complete
 * in one read (the usual small answer) goes out with its header in one write.
 *
 * Timeouts (not configurable, as in Unit): 60 s to connect and for the
 * response header, 30 s between body reads. One socket timer of 30 s is
 * armed once per connection and restarted by every read and write; waiting
 * for the header it is allowed to fire once before it counts. An idle pooled
 * connection is closed when it fires (or when the server closes it first).
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { SocketAddress } from '../config/address.ts';
import type { UnitResponse } from './response.ts';
import type { Request } from './request.ts';

/** The 30 s timer unit; the header wait is two of them. */
const TIMER_MS = 30000;
/** Methods that may be sent again when a kept-alive connection turns out closed (RFC 9110 §9.2.2). */
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Idle connections kept per server address. */
const MAX_IDLE = 128;
/** The whole response header must fit in 64 KiB (§4.4), else 502. */
const MAX_HEADER_SIZE = 64 * 1024;

/** Node's HTTP parser (llhttp) as node:http uses it. */
interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  consume(handle: unknown): void;
  unconsume(): void;
  finish(): number | Error | undefined;
  close(): void;
  [slot: number]: unknown;
  conn: UpstreamConnection | null;
}
interface HttpParserClass {
  new(): HttpParser;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone: number;
}

const { HTTPParser } = process.getBuiltinModule('_http_common') as { HTTPParser: HttpParserClass };

/** What a connection serves: the proxied exchange receiving the response. */
export interface UpstreamUser {
  /** The response header (1xx excepted). Return true for a response without body (HEAD). */
  onHead(status: number, headers: string[], reason: string): boolean;
  /** A piece of the body; return false to stop reading until `conn.resume()`. */
  onBody(chunk: Buffer): boolean;
  /**
   * What one read from the socket brought has been parsed (body pieces held
   * back to go out with the end of the response may go now).
   */
  onRead(): void;
  /** The response is complete. */
  onEnd(): void;
  /**
   * The connection failed: `timeout` when a timer ran out, `reused` when a
   * kept-alive connection turned out closed before anything of the response came.
   */
  onError(e: Error, timeout: boolean, reused: boolean): void;
}

/** Resource object of a parser (async_hooks want an object per parser). */
class UpstreamParserResource {
  readonly type = 'JUNCTIONUPSTREAM';
}

function onHeaders(this: HttpParser, headers: string[]): void {
  const c = this.conn;
  if (c !== null) for (let i = 0; i < headers.length; i++) c.partial.push(headers[i]);
}

function onHeadersComplete(this: HttpParser, _major: number, _minor: number, headers: string[] | undefined,
  _method: unknown, _url: unknown, status: number, reason: string, upgrade: boolean, keepAlive: boolean): number {
  const c = this.conn;
  if (c === null) return 0;
  if (headers === undefined) {
    headers = c.partial;
    c.partial = [];
  }
  return c.onHead(status, headers, reason, upgrade, keepAlive);
}

function onBody(this: HttpParser, chunk: Buffer): void {
  this.conn?.onBody(chunk);
}

function onMessageComplete(this: HttpParser): void {
  this.conn?.onComplete();
}

function onExecute(this: HttpParser, ret: number | Error): void {
  const c = this.conn;
  if (c === null) return;
  (c.socket as unknown as { _unrefTimer(): void })._unrefTimer();
  if (ret instanceof Error) c.fail(ret, false);
  else c.readParsed();
}

/** One connection to a server. */
export class UpstreamConnection {
  readonly pool: UpstreamPool;
  readonly socket: net.Socket;
  private readonly parser: HttpParser;
  /** Header fields delivered in pieces (a header longer than one read). */
  partial: string[] = [];
  /** The exchange being served, null while idle. */
  private user: UpstreamUser | null = null;
  /** This exchange has seen the response header (1xx excepted). */
  private headSeen = false;
  /** A 1xx response is being skipped. */
  private informational = false;
  /** The response may leave the connection open. */
  private keepAlive = false;
  /** The exchange's request is fully written (its body may still be on its way). */
  private requestDone = false;
  private responseDone = false;
  /** Served at least one response before: a failure may be a server that closed it meanwhile. */
  private used = false;
  /** The timer fired once while waiting for the header. */
  private extended = false;
  /** Reading stopped for a slow client. */
  private paused = false;
  private connected = false;
  private closed = false;

  constructor(pool: UpstreamPool) {
    this.pool = pool;
    const a = pool.address;
    const socket = a.kind === 'unix'
      ? net.connect({ path: a.abstract ? '\0' + a.path : a.path })
      : net.connect({ host: a.host, port: a.port, family: a.family, noDelay: true });
    this.socket = socket;
    const p = new HTTPParser();
    p.initialize(HTTPParser.RESPONSE, new UpstreamParserResource(), pool.maxHeaderSize, HTTPParser.kLenientNone);
    p[HTTPParser.kOnHeaders] = onHeaders;
    p[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
    p[HTTPParser.kOnBody] = onBody;
    p[HTTPParser.kOnMessageComplete] = onMessageComplete;
    p[HTTPParser.kOnExecute] = onExecute;
    p.conn = this;
    this.parser = p;
    (socket as unknown as Record<symbol, UpstreamConnection>)[kConn] = this;
    if (pool.timed) socket.setTimeout(TIMER_MS);
    socket.on('connect', onConnect);
    socket.on('timeout', onTimeout);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onClose);
  }

  /** Take `user`'s request: `head` is its header block; a body is written to `socket` after it. */
  start(user: UpstreamUser, head: string): void {
    this.user = user;
    this.headSeen = false;
    this.informational = false;
    this.keepAlive = false;
    this.requestDone = false;
    this.responseDone = false;
    this.extended = false;
    this.partial.length = 0;
    if (this.paused) this.resume();
    this.socket.write(head, 'latin1');
  }

  /** Whether a failure now could be a kept-alive connection the server had closed. */
  get reused(): boolean {
    return this.used && !this.headSeen;
  }

  /**
   * Write the client's request body after the header (backpressure both
   * ways); the connection is reusable once all of it went out. A body the
   * client does not finish leaves the connection unusable: it is closed.
   */
  streamBody(body: Readable): void {
    const socket = this.socket;
    let ended = false;
    body.on('data', (d: Buffer) => {
      if (!this.closed && !socket.write(d)) {
        body.pause();
        socket.once('drain', () => body.resume());
      }
    });
    body.once('end', () => {
      ended = true;
      this.requestSent();
    });
    body.once('close', () => { if (!ended) this.destroy(); });
  }

  /** The request (header and body) has been written completely. */
  requestSent(): void {
    this.requestDone = true;
    if (this.responseDone) this.release();
  }

  /** Stop reading (the client is slow); `resume()` goes on. */
  pause(): void {
    this.paused = true;
    (this.socket as unknown as { _handle?: { readStop(): number } | null })._handle?.readStop();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (!this.closed) (this.socket as unknown as { _handle?: { readStart(): number } | null })._handle?.readStart();
  }

  /** Give up on the exchange (the client went away): the connection cannot be reused. */
  abandon(): void {
    this.user = null;
    this.destroy();
  }

  /** @internal */
  onConnected(): void {
    this.connected = true;
    const handle = (this.socket as unknown as { _handle: unknown })._handle;
    this.parser.consume(handle);
    this.socket.resume();
  }

  /** @internal parser: a response header. */
  onHead(status: number, headers: string[], reason: string, upgrade: boolean, keepAlive: boolean): number {
    const u = this.user;
    if (u === null || this.headSeen) {
      this.destroy();
      return 0;
    }
    if (status >= 100 && status < 200 && status !== 101) {
      // 100 Continue, 103 Early Hints: skipped; the final response follows.
      this.informational = true;
      return 1;
    }
    if (upgrade || status === 101) {
      this.fail(new Error('upgrade not supported'), false);
      return 2;
    }
    this.headSeen = true;
    this.keepAlive = keepAlive;
    return u.onHead(status, headers, reason) ? 1 : 0;
  }

  /** @internal parser: body bytes. */
  onBody(chunk: Buffer): void {
    const u = this.user;
    if (u !== null && !u.onBody(chunk)) this.pause();
  }

  /** @internal One read was parsed. */
  readParsed(): void {
    this.user?.onRead();
  }

  /** @internal parser: the message ended. */
  onComplete(): void {
    if (this.informational) {
      this.informational = false;
      return;
    }
    const u = this.user;
    if (u === null || !this.headSeen) return;
    this.responseDone = true;
    this.used = true;
    u.onEnd();
    if (this.requestDone) this.release();
  }

  /** Back to the pool, or closed when it cannot serve another request. */
  private release(): void {
    this.user = null;
    if (!this.keepAlive || this.closed) {
      this.destroy();
      return;
    }
    this.pool.putIdle(this);
  }

  /** @internal The connection failed; the exchange hears it once. */
  fail(e: Error, timeout: boolean): void {
    const u = this.user;
    const reused = this.reused;
    this.user = null;
    this.destroy();
    if (u !== null) u.onError(e, timeout, reused);
  }

  /** @internal The socket timer fired. */
  onTimer(): void {
    if (this.user === null) {
      this.destroy();
      return;
    }
    if (!this.headSeen && !this.extended) {
      // Connect and header: 60 s.
      this.extended = true;
      (this.socket as unknown as { _unrefTimer(): void })._unrefTimer();
      return;
    }
    this.fail(new Error('timed out'), true);
  }

  /** @internal The server closed its side. */
  onEof(): void {
    if (this.user !== null && this.headSeen && !this.responseDone) {
      // A body delimited by the end of the connection ends here; a short one fails.
      const ret = this.parser.finish();
      if (ret instanceof Error) {
        this.fail(ret, false);
        return;
      }
    }
    if (this.user !== null && !this.responseDone) {
      this.fail(new Error('upstream prematurely closed connection'), false);
      return;
    }
    this.destroy();
  }

  /** @internal The socket closed. */
  onClosed(): void {
    if (!this.closed) {
      this.closed = true;
      this.pool.forget(this);
    }
    if (this.user !== null && !this.responseDone) this.fail(new Error('connection closed'), false);
    const p = this.parser;
    if (p.conn !== null) {
      p.conn = null;
      if (this.connected) p.unconsume();
      setImmediate(closeParser, p);
    }
  }

  destroy(): void {
    if (!this.closed) {
      this.closed = true;
      this.pool.forget(this);
    }
    this.socket.destroy();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

function closeParser(p: HttpParser): void {
  p.close();
}

const kConn = Symbol('junction.upstream');
const connOf = (s: net.Socket): UpstreamConnection => (s as unknown as Record<symbol, UpstreamConnection>)[kConn];

function onConnect(this: net.Socket): void { connOf(this).onConnected(); }
function onTimeout(this: net.Socket): void { connOf(this).onTimer(); }
function onError(this: net.Socket, e: Error): void { connOf(this).fail(e, false); }
function onEnd(this: net.Socket): void { connOf(this).onEof(); }
function onClose(this: net.Socket): void { connOf(this).onClosed(); }

/** Idle connections to one server address. */
export class UpstreamPool {
  readonly address: SocketAddress;
  /** Unit's proxy timeouts apply (else the server's own limits do: the application gateway). */
  readonly timed: boolean;
  /** Largest response header accepted. */
  readonly maxHeaderSize: number;
  private readonly idle: UpstreamConnection[] = [];

  /** `timed` false and `maxHeaderSize` are for the application gateway (app-gateway.ts). */
  constructor(address: SocketAddress, timed = true, maxHeaderSize = MAX_HEADER_SIZE) {
    this.address = address;
    this.timed = timed;
    this.maxHeaderSize = maxHeaderSize;
  }

  /** An idle connection (most recently used first), or a new one. */
  acquire(): UpstreamConnection {
    for (;;) {
      const c = this.idle.pop();
      if (c === undefined) return new UpstreamConnection(this);
      if (!c.isClosed) return c;
    }
  }

  /** @internal */
  putIdle(c: UpstreamConnection): void {
    if (this.idle.length >= MAX_IDLE) {
      c.destroy();
      return;
    }
    this.idle.push(c);
  }

  /** @internal A connection closed: out of the idle list. */
  forget(c: UpstreamConnection): void {
    const i = this.idle.lastIndexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
  }
}

/** Pieces of a body kept as one string with the header when they are this small. */
const ONE_WRITE_MAX = 16 * 1024;

/** The client side of a relayed response body (see the module comment). */
export class BodyRelay {
  readonly res: UnitResponse;
  private held: Buffer | null = null;
  private streamed = false;

  constructor(res: UnitResponse) {
    this.res = res;
  }

  /** A piece of the body; false when the client is slow (`drain` is then awaited by `onDrain`). */
  push(chunk: Buffer, onDrain: () => void): boolean {
    if (this.held === null && !this.streamed) {
      this.held = chunk;
      return true;
    }
    this.flush(onDrain);
    if (this.res.write(chunk)) return true;
    this.res.once('drain', onDrain);
    return false;
  }

  /**
   * The read ended: a held piece goes out, or, when the read brought the head
   * alone (an event stream, a long poll, `flushHeaders()`), the head does.
   * False when the client is slow (as push).
   */
  flush(onDrain: () => void): boolean {
    const h = this.held;
    if (h === null) {
      if (!this.streamed) {
        this.streamed = true;
        this.res.flushHeaders();
      }
      return true;
    }
    this.held = null;
    this.streamed = true;
    if (this.res.write(h)) return true;
    this.res.once('drain', onDrain);
    return false;
  }

  /** The body is complete. */
  end(): void {
    const h = this.held;
    this.held = null;
    this.streamed = true;
    if (h === null) this.res.end();
    else if (h.length <= ONE_WRITE_MAX) this.res.endWith(h.toString('latin1'));
    else this.res.end(h);
  }
}

const pools = new Map<string, UpstreamPool>();

/** The pool for server `name` (its address as configured), shared by all configurations. */
export function upstreamPool(name: string, address: SocketAddress): UpstreamPool {
  let p = pools.get(name);
  if (p === undefined) {
    p = new UpstreamPool(address);
    pools.set(name, p);
  }
  return p;
}

const kRelay = Symbol('junction.relay');
type RelayCarrier = { [kRelay]?: ResponseRelay };

function onRelayClientClose(this: unknown): void {
  (this as RelayCarrier)[kRelay]!.onClientClose();
}

function onRelayClientDrain(this: unknown): void {
  (this as RelayCarrier)[kRelay]!.conn?.resume();
}

/**
 * A client request relayed over an upstream connection (a `proxy` action,
 * another router's application gateway): the request goes out with its body
 * streamed; the response head, minus the hop-by-hop fields `hop`, and the
 * body come back to the client with back-pressure both ways. A kept-alive
 * connection found closed is retried once on another for an idempotent
 * request whose body was not sent; any other failure before the head is
 * `failed()`, after it the client connection is closed.
 */
export abstract class ResponseRelay implements UpstreamUser {
  readonly r: Request;
  /** The request head as sent upstream. */
  readonly head: string;
  conn: UpstreamConnection | null = null;
  answered = false;
  finished = false;
  retried = false;
  /** The client's body is being sent (the request cannot be sent again). */
  streaming = false;
  /** The response body on its way to the client, once the head came. */
  body: BodyRelay | null = null;

  constructor(r: Request, head: string) {
    this.r = r;
    this.head = head;
  }

  /** A connection to send the request on. */
  protected abstract connection(): UpstreamConnection;
  /** Response fields not relayed to the client (lower-case names). */
  protected abstract hop(): ReadonlySet<string>;
  /** The request failed before any answer came: answer the client. */
  protected abstract failed(e: Error, timeout: boolean): void;
  /** A response head that is not relayed but acted upon (true: taken care of). */
  protected special(_status: number, _reason: string): boolean { return false; }

  /** Relay the request: watch the client, then send. */
  start(): void {
    this.r.res.on('close', onRelayClientClose);
    (this.r.res as unknown as RelayCarrier)[kRelay] = this;
    this.send();
  }

  /** Write the request on a connection: its head, then its body if it has one. */
  send(): void {
    const c = this.connection();
    this.conn = c;
    c.start(this, this.head);
    const body = this.r.req;
    if (!this.r.hasBody || (body.complete && body.readableLength === 0)) {
      c.requestSent();
      return;
    }
    this.streaming = true;
    c.streamBody(body);
  }

  onHead(status: number, headers: string[], reason: string): boolean {
    const r = this.r;
    if (this.answered) return false;
    this.answered = true;
    if (this.special(status, reason)) {
      this.finished = true;
      return false;
    }
    const hop = this.hop();
    const f: string[] = [];
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (!(name.length <= 17 && hop.has(name.toLowerCase()))) f.push(name, headers[i + 1]);
    }
    r.res.writeStart(status, f, null);
    this.body = new BodyRelay(r.res);
    return r.method === 'HEAD';
  }

  onBody(chunk: Buffer): boolean {
    if (this.finished || this.body === null) return true;
    return this.body.push(chunk, onRelayClientDrain);
  }

  onRead(): void {
    if (this.body !== null && !this.finished && !this.body.flush(onRelayClientDrain)) this.conn?.pause();
  }

  onEnd(): void {
    this.conn = null;
    if (this.finished) return;
    this.finished = true;
    if (this.body !== null) this.body.end();
    else this.r.res.end();
  }

  onError(e: Error, timeout: boolean, reused: boolean): void {
    this.conn = null;
    const r = this.r;
    if (this.answered) {
      // After the head: the client connection is closed (a short body stays short).
      if (!this.finished) r.res.destroy();
      return;
    }
    if (reused && !this.streaming && !this.retried && !r.res.destroyed && IDEMPOTENT.has(r.method)) {
      // A kept-alive connection the server had closed meanwhile: once more on a new one.
      this.retried = true;
      this.send();
      return;
    }
    this.answered = true;
    this.finished = true;
    this.failed(e, timeout);
  }

  onClientClose(): void {
    const c = this.conn;
    if (c !== null && !this.finished) {
      this.conn = null;
      c.abandon();
    }
  }
}
