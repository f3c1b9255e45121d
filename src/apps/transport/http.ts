/**
 * HTTP/1.1 to an `external` application process over its Unix socket
 * (Node apps through the preload, Go, anything serving on LISTEN_FDS).
 *
 * A small HTTP client of its own, built for this one job: each process has a
 * set of kept-alive connections, reused last-in first-out, one request at a
 * time on each (no pipelining: a slow response must never hold up another).
 * A request head is written as one string straight from the client's field
 * list; the response is parsed by Node's own HTTP parser (llhttp) and handed
 * to the client response as it comes — the field list the parser produced is
 * passed through unchanged, bodies stream both ways with backpressure. No
 * http.Agent, ClientRequest or IncomingMessage per request.
 *
 * Request fields are the client's, minus hop-by-hop ones, plus
 * `Junction-Client` (CLIENT_FIELD): the client's address, port, the
 * listener's address and port and the scheme. The transport is the only one
 * to set it — a copy sent by a client is dropped — so an application may
 * trust it; the Node preload turns it into `req.socket.remoteAddress` & co.
 * Response fields the router owns (`Server`, `Connection`,
 * `Transfer-Encoding`, `Keep-Alive`, …) are dropped; `Date`, `Content-Type`,
 * repeated `Set-Cookie` and the rest pass in order.
 * Failures before the response head → 503; after → the client connection closes.
 *
 * A process of a Node app may also take whole client connections
 * (handoff(): transport/handoff.ts); its counters and the idle connections it
 * gives back when quitting or exiting come back over the same channel, and
 * the connections it never took (it died first) are served by the router.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { DROPPED_RESPONSE_FIELDS, writeRawError, type AppConnection, type Exchange } from '../exchange.ts';
import type { AppHandoff, AppRequest } from '../types.ts';
import { markRefused, type HandoffChannel } from './handoff.ts';
import { SERVER_NAME } from '../../runtime/version.ts';

/** The request field carrying the client's address to the application (see module comment). */
export const CLIENT_FIELD = 'Junction-Client';
const CLIENT_FIELD_LOWER = 'junction-client';

/** Request fields that belong to one hop (RFC 9110 §7.6.1), lower-case. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Methods safe to send again to another process (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
/** A kept-alive connection idle at least this long (ms) may have been closed by the process's own idle timeout. */
const IDLE_CLOSE_MS = 1000;
/** How long (ms) a failed request waits for its process's exit report to know whether it was killed. */
const KILLED_WAIT_MS = 1000;
/** Signals that mean the process was killed, not that it crashed. */
const KILL_SIGNALS = new Set(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP']);
/** `PF_EXITING` in the flags of /proc/PID/stat (include/linux/sched.h). */
const PF_EXITING = 0x4;

/** Node's llhttp binding, as node:http uses it. */
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  close(): void;
  [key: number]: unknown;
  [kSocket]?: AppSocket;
}
interface ParserClass {
  new (): Parser;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}
const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass };

const kSocket = Symbol('junction.appSocket');
const kExchange = Symbol('junction.exchange');

type Tagged<T> = T & { [kExchange]?: HttpExchange; [kSocket]?: AppSocket };

/** Escape what would split the `Junction-Client` value (spaces; `%` itself). */
function token(s: string): string {
  return s.indexOf(' ') < 0 && s.indexOf('%') < 0 ? s : s.replace(/[% ]/g, (c) => (c === ' ' ? '%20' : '%25'));
}

/** `Junction-Client` value: remote address and port, local address and port, scheme. */
export function clientValue(r: Pick<AppRequest, 'remoteAddr' | 'remotePort' | 'localAddr' | 'localPort' | 'tls'>): string {
  return `${token(r.remoteAddr || '-')} ${r.remotePort ?? 0} ${token(r.localAddr || '-')} ${r.localPort || 0} ${r.tls ? 'https' : 'http'}`;
}

/**
 * The request head for the application: request line with the raw target,
 * the client's fields minus hop-by-hop ones (and those `Connection` names) and
 * minus any `Junction-Client`, a `Host` when the client sent none (HTTP/1.0),
 * then `Junction-Client`. Latin-1, as Node decoded the fields.
 */
export function requestHead(r: AppRequest): { head: string; hasBody: boolean } {
  const raw = r.rawHeaders;
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 10 || raw[i].toLowerCase() !== 'connection') continue;
    for (const t of raw[i + 1].split(',')) {
      const v = t.trim().toLowerCase();
      if (v !== '' && v !== 'close' && v !== 'keep-alive') (named ??= new Set()).add(v);
    }
  }
  let hasBody = false;
  let host = false;
  let head = `${r.req.method} ${r.target} HTTP/1.1\r\n`;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const n = name.toLowerCase();
    if (HOP_BY_HOP.has(n)) {
      if (n === 'transfer-encoding') hasBody = true;
      continue;
    }
    if (n === CLIENT_FIELD_LOWER || (named !== undefined && named.has(n))) continue;
    if (n === 'content-length') {
      if (raw[i + 1].trim() !== '0') hasBody = true;
    } else if (n === 'host') {
      host = true;
    }
    head += `${name}: ${raw[i + 1]}\r\n`;
  }
  if (!host) head += `Host: ${r.serverName || 'localhost'}\r\n`;
  head += `${CLIENT_FIELD}: ${clientValue(r)}\r\n\r\n`;
  return { head, hasBody };
}

/**
 * Client fields for the app as a flat list (see requestHead), without
 * `Junction-Client`. Kept for callers that build their own requests.
 */
export function requestFields(raw: readonly string[], serverName: string, keepUpgrade = false): { fields: string[]; hasBody: boolean } {
  let named: Set<string> | undefined;
  let hasBody = false;
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    if (n === 'connection') {
      for (const t of raw[i + 1].split(',')) {
        const v = t.trim().toLowerCase();
        if (v && !(keepUpgrade && v === 'upgrade')) (named ??= new Set()).add(v);
      }
    } else if (n === 'content-length') {
      if (raw[i + 1].trim() !== '0') hasBody = true;
    } else if (n === 'transfer-encoding') {
      hasBody = true;
    } else if (n === 'host') {
      host = true;
    }
  }
  const fields: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(n) && !(keepUpgrade && (n === 'upgrade' || n === 'connection'))) continue;
    if (n === CLIENT_FIELD_LOWER || named?.has(n)) continue;
    fields.push(raw[i], raw[i + 1]);
  }
  if (!host) fields.push('Host', serverName || 'localhost');
  if (keepUpgrade) {
    for (let i = 0; i < fields.length; i += 2) if (fields[i].toLowerCase() === 'connection') fields[i + 1] = 'Upgrade';
  }
  return { fields, hasBody };
}

/** App fields for the client, router-owned ones removed (spec/router.md §2.8); `raw` itself when none is there. */
export function responseFields(raw: string[]): string[] {
  let i = 0;
  for (; i < raw.length; i += 2) if (DROPPED_RESPONSE_FIELDS.has(raw[i].toLowerCase())) break;
  if (i >= raw.length) return raw;
  const out = raw.slice(0, i);
  for (; i < raw.length; i += 2) {
    if (!DROPPED_RESPONSE_FIELDS.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** One request on its way through an AppSocket. */
class HttpExchange {
  readonly conn: HttpConnection;
  readonly ex: Exchange;
  readonly head: boolean;
  s: AppSocket | null = null;
  done = false;
  headersSent = false;
  retried = false;
  /** An earlier attempt may have reached the app (reset after the write). */
  maybeDelivered = false;
  /** The current attempt's request head was accepted by the kernel. */
  flushed = false;
  bodyStarted = false;
  bodyEnded = false;
  /** The head is stored in the client response, not sent yet (no body byte followed it). */
  headPending = false;

  constructor(conn: HttpConnection, ex: Exchange) {
    this.conn = conn;
    this.ex = ex;
    this.head = ex.r.req.method === 'HEAD';
  }

  /** Send the request on a connection of the pool (a new one when `fresh`). */
  start(fresh = false): void {
    const r = this.ex.r;
    const s = this.conn.take(fresh);
    s.x = this;
    this.s = s;
    this.flushed = false;
    const { head, hasBody } = requestHead(r);
    const req = r.req;
    if (hasBody && !req.readableEnded) {
      s.sock.write(head, 'latin1');
      this.bodyStarted = true;
      (req as Tagged<typeof req>)[kExchange] = this;
      req.on('end', onRequestBodyEnd);
      req.pipe(s.sock, { end: false });
    } else {
      this.bodyEnded = true;
      s.sock.write(head, 'latin1', s.onFlushed);
    }
  }

  /** The response head arrived. @returns false when it cannot be sent (the exchange failed). */
  onHead(status: number, fields: string[]): boolean {
    const ex = this.ex;
    ex.activity();
    try {
      ex.r.res.writeHead(status, responseFields(fields) as unknown as http.OutgoingHttpHeaders);
    } catch {
      // Status or field values Node refuses to send: a bad response, as Unit.
      this.failed();
      return false;
    }
    this.headersSent = true;
    this.headPending = true;
    return true;
  }

  onBody(b: Buffer): void {
    this.headPending = false;
    this.ex.activity();
    const res = this.ex.r.res;
    const s = this.s;
    if (!res.write(b) && s !== null && s.pausedBy === null) {
      s.pausedBy = res;
      s.sock.pause();
      res.once('drain', s.onDrain);
    }
  }

  /** The response is complete: the connection returns to the pool. */
  completed(keepAlive: boolean): void {
    if (this.done) return;
    this.done = true;
    const s = this.s!;
    this.s = null;
    s.x = null;
    if (s.pausedBy !== null) {
      s.pausedBy = null;
      s.sock.resume();
    }
    this.ex.r.res.end();
    if (!this.bodyEnded) {
      // The app answered before reading the whole body: the connection is in an unknown state.
      this.ex.r.req.unpipe(s.sock);
      s.sock.destroy();
    } else if (keepAlive) {
      this.conn.release(s);
    } else {
      s.sock.destroy();
    }
    this.ex.finish();
  }

  /**
   * The process cannot take or finish this request. Before anything of the
   * response arrived, and with the request body untouched, a connection failure
   * is retried: once on a new connection when a kept-alive one that had been
   * idle a while turned out closed by the process (its own idle timeout), and
   * on another process (the pool's queue) when the process certainly never
   * saw the request (refused, or a write the kernel refused). A request the
   * process may have read is not sent again when the process ended of its
   * own (it may have died of that request, as a crash in Unit is a 503) or
   * closed the connection on it; an idempotent one is, once, when a signal
   * (SIGKILL, SIGTERM…) killed the process meanwhile.
   */
  failed(code?: string): void {
    if (this.done) return;
    const s = this.detach();
    const refused = code === 'ECONNREFUSED' || code === 'ENOENT';
    const reset = code === 'ECONNRESET' || code === 'EPIPE';
    // Nobody listens any more: the process is gone.
    if (refused) this.conn.lost();
    if ((refused || reset) && !this.headersSent && !this.bodyStarted) {
      // A Unix socket refuses writes once its peer is gone, so a request the kernel
      // accepted may have been read (and may have killed the app); one it did not was not.
      if (reset && this.flushed) this.maybeDelivered = true;
      if (reset && !this.retried && s !== null && s.used && performance.now() - s.idleSince >= IDLE_CLOSE_MS &&
        !this.conn.dying()) {
        this.retried = true;
        this.start(true);
        return;
      }
      if (!this.maybeDelivered) {
        this.done = true;
        if (!this.ex.requeue(false)) this.unavailable();
        return;
      }
      if (IDEMPOTENT.has(this.ex.r.req.method ?? '')) {
        // The process may have read it: sent again only if something else killed the
        // process meanwhile (a signal to it), never when it ended of its own (a crash).
        this.done = true;
        this.conn.whenExited(KILLED_WAIT_MS, (killed) => {
          if (!killed || !this.ex.requeue(true)) this.unavailable();
        });
        return;
      }
    }
    this.done = true;
    this.unavailable();
  }

  /** Answer 503 (or close, after the head) and end the exchange. */
  private unavailable(): void {
    this.ex.fail(503);
    this.ex.finish();
  }

  /** Take the exchange off its socket, which is closed; returns that socket, if any. */
  private detach(): AppSocket | null {
    const s = this.s;
    this.s = null;
    if (s !== null) {
      s.x = null;
      if (this.bodyStarted) this.ex.r.req.unpipe(s.sock);
      s.sock.destroy();
    }
    return s;
  }

  /** The client is gone or the pool answered already (timeout): drop the app side. */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.detach();
    this.ex.finish();
  }
}

function onRequestBodyEnd(this: Tagged<http.IncomingMessage>): void {
  const x = this[kExchange];
  if (x === undefined) return;
  this[kExchange] = undefined;
  x.bodyEnded = true;
  if (x.s !== null) this.unpipe(x.s.sock);
}

function onClientClose(this: Tagged<http.ServerResponse>): void {
  const x = this[kExchange];
  // The client went away before the app finished: stop the app side too.
  if (x !== undefined && !x.done) x.abandon();
}

/** One kept-alive connection to the process, with its response parser. */
class AppSocket {
  readonly conn: HttpConnection;
  readonly sock: net.Socket;
  readonly parser: Parser;
  x: HttpExchange | null = null;
  /** It served a request already: a failure on it may be a close racing our write. */
  used = false;
  /** `performance.now()` when it last went back to the idle list. */
  idleSince = 0;
  /** Fields of a head longer than one read (llhttp hands them over in parts). */
  partial: string[] = [];
  /** The message being parsed is a 1xx (skipped: the final response follows). */
  informational = false;
  keepAlive = true;
  /** The process closed its side. */
  ended = false;
  /** The client response whose backpressure paused this connection. */
  pausedBy: http.ServerResponse | null = null;
  error: string | undefined;
  readonly onFlushed: (err?: Error | null) => void;
  readonly onDrain: () => void;

  constructor(conn: HttpConnection) {
    this.conn = conn;
    const sock = net.connect(conn.socketPath);
    this.sock = sock;
    (sock as Tagged<net.Socket>)[kSocket] = this;
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    parser[kSocket] = this;
    parser[HTTPParser.kOnHeaders] = onParserHeaders;
    parser[HTTPParser.kOnHeadersComplete] = onParserHeadersComplete;
    parser[HTTPParser.kOnBody] = onParserBody;
    parser[HTTPParser.kOnMessageComplete] = onParserMessageComplete;
    this.parser = parser;
    sock.on('data', onSocketData);
    sock.on('end', onSocketEnd);
    sock.on('error', onSocketError);
    sock.on('close', onSocketClose);
    this.onFlushed = (err) => { if (!err && this.x !== null) this.x.flushed = true; };
    this.onDrain = () => {
      if (this.pausedBy === null) return;
      this.pausedBy = null;
      if (!this.sock.destroyed) this.sock.resume();
    };
  }
}

function onSocketData(this: Tagged<net.Socket>, data: Buffer): void {
  const s = this[kSocket]!;
  const ret = s.parser.execute(data);
  if (typeof ret !== 'number') {
    // Not HTTP: a malformed response (503 before the head, else a closed connection).
    s.x?.failed();
    this.destroy();
    return;
  }
  const x = s.x;
  if (x !== null && x.headPending) {
    // A head without its body yet (flushHeaders(), a slow body): the client gets it now.
    x.headPending = false;
    x.ex.r.res.flushHeaders();
  }
}

function onSocketEnd(this: Tagged<net.Socket>): void {
  const s = this[kSocket]!;
  s.ended = true;
  // A close-delimited body ends here.
  if (s.x !== null) s.parser.finish();
  if (s.x !== null) s.error ??= 'ECONNRESET';
  this.destroy();
}

function onSocketError(this: Tagged<net.Socket>, err: NodeJS.ErrnoException): void {
  const s = this[kSocket]!;
  s.error ??= err.code ?? 'ECONNRESET';
}

function onSocketClose(this: Tagged<net.Socket>): void {
  const s = this[kSocket]!;
  s.conn.forget(s);
  s.parser.close();
  const x = s.x;
  if (x !== null) x.failed(s.error ?? 'ECONNRESET');
}

function onParserHeaders(this: Parser, headers: string[]): void {
  const s = this[kSocket]!;
  for (const h of headers) s.partial.push(h);
}

function onParserHeadersComplete(this: Parser, _major: number, _minor: number, headers: string[] | undefined,
  _method: unknown, _url: unknown, status: number, _reason: string, _upgrade: boolean, keepAlive: boolean): number {
  const s = this[kSocket]!;
  if (headers === undefined) {
    headers = s.partial;
    s.partial = [];
  }
  if (status < 200) {
    // 100 Continue & co.: the router dealt with the client's expectations; wait for the final answer.
    s.informational = true;
    return 0;
  }
  s.informational = false;
  s.keepAlive = keepAlive;
  const x = s.x;
  if (x === null || x.done) {
    // Nobody asked (or nobody listens any more): this connection is out of step.
    s.sock.destroy();
    return 1;
  }
  if (status === 101 || !x.onHead(status, headers)) return 1;
  return x.head ? 1 : 0;
}

function onParserBody(this: Parser, b: Buffer): void {
  const x = this[kSocket]!.x;
  if (x !== null && !x.done) x.onBody(b);
}

function onParserMessageComplete(this: Parser): void {
  const s = this[kSocket]!;
  if (s.informational) {
    s.informational = false;
    return;
  }
  s.used = true;
  const x = s.x;
  if (x !== null && x.headersSent) x.completed(s.keepAlive);
}

/**
 * How long the connection channel of a process main reported gone may stay
 * open waiting for its end (normally seen at once), ms.
 */
const CHANNEL_GRACE = 200;

/** Where connections were handed over from (a listener), by id: the id travels with the connection. */
interface Origin { reinject: AppHandoff['reinject']; counters: AppHandoff['counters'] }
const origins = new Map<number, Origin>();
const originIds = new WeakMap<AppHandoff['reinject'], number>();
let nextOrigin = 1;

function originOf(h: AppHandoff): number {
  let id = originIds.get(h.reinject);
  if (id === undefined) {
    id = nextOrigin++;
    originIds.set(h.reinject, id);
  }
  origins.set(id, { reinject: h.reinject, counters: h.counters });
  return id;
}

/** The HTTP transport to one process. */
export class HttpConnection implements AppConnection {
  readonly socketPath: string;
  /** The process, when known (to tell a dying process from an idle close). */
  readonly pid: number | undefined;
  /** Client connections handed to the process and not yet reported closed. */
  direct = 0;
  /** Requests under way and upgraded connections on them, as the process last reported. */
  #directBusy = 0;
  /** `performance.now()` of the last report with requests under way (-Infinity: none yet). */
  #directBusyAt = -Infinity;
  readonly #channel: HandoffChannel | undefined;
  #counters: AppHandoff['counters'] | undefined;
  readonly #onLost: () => void;
  /** Idle kept-alive connections, the most recently used last. */
  readonly #idle: AppSocket[] = [];
  readonly #all = new Set<AppSocket>();
  #lost = false;
  #closed = false;

  /**
   * @param socketPath the process's Unix socket (from AppHost.spawn)
   * @param onLost called once when the process stops accepting connections
   * @param channel the process's connection channel (Node apps that take whole connections)
   * @param pid the process (a failed request is then not sent again to a dying one)
   */
  constructor(socketPath: string, onLost: () => void = () => {}, channel?: HandoffChannel, pid?: number) {
    this.socketPath = socketPath;
    this.pid = pid;
    this.#onLost = onLost;
    this.#channel = channel;
    channel?.onMessage((msg, socket) => this.#fromProcess(msg, socket));
    channel?.onReclaim((socket, msg) => this.#reclaimed(socket, msg));
    channel?.onClose(() => {
      // The process is gone, and the client connections it held with it.
      if (this.#counters !== undefined) this.#counters.closed += this.direct;
      this.direct = 0;
    });
  }

  /**
   * Requests under way (upgraded connections included) on the client
   * connections handed to the process, as it last reported them (within
   * about 100 ms, and at once when told to quit); 0 once its channel ended.
   * The router cannot see those requests: a quitting process is left to
   * finish them.
   */
  get directBusy(): number {
    return this.#channel === undefined || this.#channel.closed ? 0 : this.#directBusy;
  }

  /**
   * Whether the process had requests under way on handed connections within
   * the last `ms`: one that just finished them is on its way out (it exits
   * once its connections are given back) and is left that time.
   */
  directBusyWithin(ms: number): boolean {
    return this.directBusy > 0 || (this.#channel !== undefined && !this.#channel.closed && performance.now() - this.#directBusyAt < ms);
  }

  /** Whether the process can take a whole connection now. */
  get canHandoff(): boolean {
    return this.#channel !== undefined && !this.#channel.closed && !this.#closed && !this.#declined && !this.#exiting;
  }

  /** The process said it is exiting (its preload, from `process.on('exit')`). */
  #exiting = false;

  /**
   * Main reported the process's exit (`signal`: the one that ended it, if
   * any): the channel ends now if its end was not seen yet (a descendant that
   * kept a copy of it), so that the connections the process never
   * acknowledged come back; requests waiting in whenExited() learn whether
   * the process was killed.
   */
  exited(signal: string | null = null): void {
    this.#channel?.closeSoon(CHANNEL_GRACE);
    this.#exit = { killed: signal !== null && KILL_SIGNALS.has(signal) };
    const waiting = this.#exitWaiters;
    this.#exitWaiters = [];
    for (const w of waiting) w(this.#exit.killed);
  }

  /** How the process ended, once main reported it. */
  #exit: { killed: boolean } | null = null;
  #exitWaiters: Array<(killed: boolean) => void> = [];

  /**
   * Call `cb(killed)` once the process's exit is reported (`killed`: a signal
   * such as SIGKILL ended it), or with false after `ms` if it is not.
   */
  whenExited(ms: number, cb: (killed: boolean) => void): void {
    if (this.#exit !== null) {
      cb(this.#exit.killed);
      return;
    }
    let called = false;
    const once = (killed: boolean) => {
      if (called) return;
      called = true;
      clearTimeout(timer);
      cb(killed);
    };
    const timer = setTimeout(() => {
      const i = this.#exitWaiters.indexOf(once);
      if (i >= 0) this.#exitWaiters.splice(i, 1);
      once(false);
    }, ms);
    this.#exitWaiters.push(once);
  }

  /**
   * A connection the process never took (transport/handoff.ts): not counted
   * as handed over; back to its listener, which serves it itself.
   */
  #reclaimed(socket: net.Socket, msg: Record<string, unknown>): void {
    const origin = origins.get(Number(msg.l));
    if (origin === undefined) {
      socket.destroy();
      return;
    }
    this.direct = Math.max(0, this.direct - 1);
    origin.counters.accepted--;
    origin.reinject(markRefused(socket));
  }

  /** The process said it cannot serve whole connections (its server is not node:http). */
  #declined = false;

  /**
   * Hand the client connection over to the process, with the settings it
   * applies to it (Server field, idle timeout, body size limit).
   * @returns false when it cannot take it (the socket is untouched).
   */
  handoff(h: AppHandoff): boolean {
    if (!this.canHandoff) return false;
    const msg = { junction: 'conn', l: originOf(h), server: h.server, idle: h.idleTimeout, max: h.maxBodySize };
    if (!this.#channel!.send(h.socket, msg)) return false;
    this.direct++;
    this.#counters = h.counters;
    h.counters.accepted++;
    return true;
  }

  /** A message of the process: its counters, or a connection it gives back (quitting). */
  #fromProcess(msg: Record<string, unknown>, socket?: net.Socket): void {
    if (msg.junction === 'decline') {
      this.#declined = true;
      return;
    }
    if (msg.junction === 'exiting') {
      this.#exiting = true;
      return;
    }
    if (msg.junction === 'stats') {
      const requests = Number(msg.r) || 0;
      const closed = Number(msg.c) || 0;
      this.direct = Math.max(0, this.direct - closed);
      if (msg.b !== undefined) this.#directBusy = Math.max(0, Number(msg.b) || 0);
      if (this.#directBusy > 0) this.#directBusyAt = performance.now();
      if (this.#counters !== undefined) {
        this.#counters.requests += requests;
        this.#counters.closed += closed;
      }
      return;
    }
    if (socket === undefined) return;
    const origin = msg.junction === 'back' ? origins.get(Number(msg.l)) : undefined;
    if (origin === undefined) socket.destroy();
    else origin.reinject(socket);
  }

  /** Connections open to the process (idle and busy). */
  get connections(): number {
    return this.#all.size;
  }

  dispatch(ex: Exchange): void {
    const x = new HttpExchange(this, ex);
    ex.state = x;
    if (ex.upgrade) {
      this.#upgrade(x);
      return;
    }
    const res = ex.r.res as Tagged<http.ServerResponse>;
    res[kExchange] = x;
    res.once('close', onClientClose);
    x.start();
  }

  abandon(ex: Exchange): void {
    (ex.state as HttpExchange | undefined)?.abandon();
  }

  /**
   * Drop every connection; requests in flight fail (and may be given to another
   * process). The connection channel stays open: a quitting process gives its
   * idle client connections back through it, and it closes when the process exits.
   */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#all]) s.sock.destroy();
    this.#idle.length = 0;
  }

  lost(): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#onLost();
  }

  /** @internal A connection for one request: the most recently used idle one, else a new one. */
  take(fresh: boolean): AppSocket {
    if (!fresh) {
      const idle = this.#idle;
      while (idle.length > 0) {
        const s = idle.pop()!;
        if (!s.sock.destroyed) return s;
      }
    }
    const s = new AppSocket(this);
    this.#all.add(s);
    if (this.#closed) s.sock.destroy();
    return s;
  }

  /** @internal The request on `s` is over and `s` may serve the next one. */
  release(s: AppSocket): void {
    if (this.#closed || s.ended || s.sock.destroyed) {
      s.sock.destroy();
      return;
    }
    s.idleSince = performance.now();
    this.#idle.push(s);
  }

  /**
   * The process is exiting or gone: /proc/PID/stat shows it a zombie, or
   * PF_EXITING in its flags (set before its descriptors are closed, so it is
   * seen by the time its connections end). False when the pid is unknown.
   */
  dying(): boolean {
    if (this.pid === undefined) return false;
    try {
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return f[0] === 'Z' || f[0] === 'X' || (Number(f[6]) & PF_EXITING) !== 0;
    } catch {
      return true;
    }
  }

  /** @internal `s` closed. */
  forget(s: AppSocket): void {
    this.#all.delete(s);
    const i = this.#idle.lastIndexOf(s);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  /** WebSocket (any Upgrade) pass-through: the app's 101 and then raw bytes both ways. */
  #upgrade(x: HttpExchange): void {
    const u = x.ex.upgrade!;
    const client = u.socket;
    const { fields } = requestFields(u.rawHeaders, u.serverName, true);
    fields.push(CLIENT_FIELD, clientValue(u));
    const up = http.request({
      agent: false,
      socketPath: this.socketPath,
      method: u.req.method,
      path: u.target,
      headers: fields as unknown as http.OutgoingHttpHeaders,
      setHost: false,
    });
    const fail = (err?: NodeJS.ErrnoException) => {
      if (x.done) return;
      x.done = true;
      if (err && (err.code === 'ECONNREFUSED' || err.code === 'ENOENT')) this.lost();
      if (x.headersSent) client.destroy();
      else writeRawError(client, 503);
      up.destroy();
      x.ex.finish();
    };
    x.abandon = () => {
      if (x.done) return;
      x.done = true;
      up.destroy();
      client.destroy();
      x.ex.finish();
    };
    up.on('error', fail);
    client.on('error', () => fail());
    client.once('close', () => fail());
    up.on('upgrade', (upRes: http.IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
      x.headersSent = true;
      x.ex.tunnel();
      let head = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n`;
      const raw = upRes.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i].toLowerCase() !== 'server') head += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      client.write(`${head}Server: ${SERVER_NAME}\r\n\r\n`);
      if (upHead.length) client.write(upHead);
      if (u.head.length) upSocket.write(u.head);
      // Either side ending ends the tunnel: flush what is buffered, then close both.
      upSocket.pipe(client, { end: false });
      client.pipe(upSocket, { end: false });
      upSocket.once('end', () => client.end(() => client.destroy()));
      client.once('end', () => upSocket.end(() => upSocket.destroy()));
      const end = () => {
        upSocket.destroy();
        client.destroy();
        if (!x.done) { x.done = true; x.ex.finish(); }
      };
      upSocket.once('close', end);
      client.once('close', end);
      upSocket.on('error', end);
    });
    up.on('response', (upRes: http.IncomingMessage) => {
      // The app declined the upgrade: relay its answer and close.
      x.headersSent = true;
      let head = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n`;
      const fields = responseFields(upRes.rawHeaders);
      for (let i = 0; i < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
      // Node de-chunked the body; without a length, closing delimits it.
      client.write(`${head}Server: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
      upRes.pipe(client);
      upRes.once('end', () => { if (!x.done) { x.done = true; x.ex.finish(); } });
      upRes.once('close', () => { if (!upRes.complete) fail(); });
    });
    up.end();
  }
}
