/**
 * HTTP/1.1 to an `external` application process over its Unix socket
 * (Node apps through the preload, Go, anything serving on LISTEN_FDS).
 *
 * Connections are kept alive and reused (one http.Agent per process); bodies
 * stream both ways with backpressure. Request fields are the client's, minus
 * hop-by-hop ones; the target is the raw one. Response fields the router owns
 * (`Server`, `Connection`, `Transfer-Encoding`, `Keep-Alive`, …) are dropped;
 * `Date`, `Content-Type`, repeated `Set-Cookie` and the rest pass in order.
 * Failures before the response head → 503; after → the client connection closes.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { DROPPED_RESPONSE_FIELDS, writeRawError, type AppConnection, type Exchange } from '../exchange.ts';
import { SERVER_NAME } from '../../runtime/version.ts';

/** Request fields that belong to one hop (RFC 9110 §7.6.1), lower-case. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

const kX = Symbol('junction.exchange');
/** Methods safe to send again to another process (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

type Tagged<T> = T & { [kX]?: HttpExchange };

class HttpExchange {
  readonly conn: HttpConnection;
  readonly ex: Exchange;
  up: http.ClientRequest | undefined;
  upRes: http.IncomingMessage | undefined;
  done = false;
  headersSent = false;
  retried = false;
  /** An earlier attempt may have reached the app (reset after the write). */
  maybeDelivered = false;
  /** The current attempt's request was accepted by the kernel in full. */
  flushed = false;
  bodyStarted = false;

  constructor(conn: HttpConnection, ex: Exchange) {
    this.conn = conn;
    this.ex = ex;
  }

  start(): void {
    const r = this.ex.r;
    const req = r.req;
    const { fields, hasBody } = requestFields(r.rawHeaders, r.serverName);
    const up: Tagged<http.ClientRequest> = http.request({
      agent: this.conn.agent,
      socketPath: this.conn.socketPath,
      method: req.method,
      path: r.target,
      headers: fields as unknown as http.OutgoingHttpHeaders,
      setHost: false,
    });
    up[kX] = this;
    this.up = up;
    this.flushed = false;
    up.once('finish', onRequestFlushed);
    up.on('response', onResponse);
    up.on('error', onRequestError);
    if (hasBody && !req.readableEnded) {
      this.bodyStarted = true;
      req.pipe(up);
    } else {
      up.end();
    }
  }

  /**
   * The process cannot take or finish this request. Before anything of the
   * response arrived, and with the request body untouched, a connection failure
   * is retried: once on a new connection when a kept-alive one turned out
   * closed, else on another process (the pool's queue) — always when the process
   * certainly never saw the request (refused, or a write the kernel refused),
   * and once for an idempotent request when it may have (as proxies retry).
   */
  failed(err?: NodeJS.ErrnoException): void {
    if (this.done) return;
    const code = err?.code;
    const refused = code === 'ECONNREFUSED' || code === 'ENOENT';
    const reset = code === 'ECONNRESET' || code === 'EPIPE';
    // Nobody listens any more: the process is gone.
    if (refused) this.conn.lost();
    if ((refused || reset) && !this.upRes && !this.bodyStarted) {
      // A Unix socket refuses writes once its peer is gone, so a request the kernel
      // accepted may have been read (and may have killed the app); one it did not was not.
      if (reset && this.flushed) this.maybeDelivered = true;
      if (reset && !this.retried && this.up?.reusedSocket) {
        this.retried = true;
        (this.up as Tagged<http.ClientRequest>)[kX] = undefined;
        this.up.removeAllListeners('response');
        this.up.destroy();
        this.start();
        return;
      }
      if (!this.maybeDelivered || IDEMPOTENT.has(this.ex.r.req.method ?? '')) {
        this.done = true;
        this.up?.destroy();
        if (this.ex.requeue(this.maybeDelivered)) return;
        this.ex.fail(503);
        this.ex.finish();
        return;
      }
    }
    this.done = true;
    this.ex.fail(503);
    this.up?.destroy();
    this.ex.finish();
  }

  /** Response complete: the connection returns to the keep-alive pool. */
  completed(): void {
    if (this.done) return;
    this.done = true;
    this.ex.finish();
  }

  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.up?.destroy();
    this.ex.finish();
  }
}

function onRequestFlushed(this: Tagged<http.ClientRequest>): void {
  const x = this[kX];
  if (x) x.flushed = true;
}

function onRequestError(this: Tagged<http.ClientRequest>, err: NodeJS.ErrnoException): void {
  this[kX]?.failed(err);
}

function onResponse(this: Tagged<http.ClientRequest>, upRes: Tagged<http.IncomingMessage>): void {
  const x = this[kX]!;
  if (x.done) { upRes.resume(); return; }
  x.upRes = upRes;
  upRes[kX] = x;
  const ex = x.ex;
  const res = ex.r.res as Tagged<http.ServerResponse>;
  ex.activity();
  try {
    res.writeHead(upRes.statusCode ?? 502, responseFields(upRes.rawHeaders) as unknown as http.OutgoingHttpHeaders);
  } catch {
    // Status or field values Node refuses to send: a bad response, as Unit.
    x.failed();
    return;
  }
  x.headersSent = true;
  upRes.on('data', onResponseData);
  upRes.once('end', onResponseEnd);
  upRes.once('close', onResponseClose);
  upRes.pipe(res);
}

function onResponseData(this: Tagged<http.IncomingMessage>): void {
  this[kX]!.ex.activity();
}

function onResponseEnd(this: Tagged<http.IncomingMessage>): void {
  this[kX]!.completed();
}

function onResponseClose(this: Tagged<http.IncomingMessage>): void {
  const x = this[kX]!;
  if (!this.complete) x.failed();
}

function onClientClose(this: Tagged<http.ServerResponse>): void {
  const x = this[kX];
  // The client went away before the app finished: stop the app side too.
  if (x && !x.done) x.abandon();
}

/**
 * Client fields for the app: hop-by-hop ones and those named by `Connection`
 * removed, a `Host` supplied when the client sent none (HTTP/1.0).
 * Returns the flat [name, value, …] list and whether a body follows.
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
    if (named?.has(n)) continue;
    fields.push(raw[i], raw[i + 1]);
  }
  if (!host) fields.push('Host', serverName || 'localhost');
  if (keepUpgrade) {
    // Only `Connection: upgrade` itself goes to the app.
    for (let i = 0; i < fields.length; i += 2) if (fields[i].toLowerCase() === 'connection') fields[i + 1] = 'Upgrade';
  }
  return { fields, hasBody };
}

/** App fields for the client, router-owned ones removed (spec/router.md §2.8). */
export function responseFields(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!DROPPED_RESPONSE_FIELDS.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** The HTTP transport to one process. */
export class HttpConnection implements AppConnection {
  readonly socketPath: string;
  readonly agent: http.Agent;
  readonly #onLost: () => void;
  #lost = false;

  /**
   * @param socketPath the process's Unix socket (from AppHost.spawn)
   * @param onLost called once when the process stops accepting connections
   */
  constructor(socketPath: string, onLost: () => void = () => {}) {
    this.socketPath = socketPath;
    this.#onLost = onLost;
    this.agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  }

  dispatch(ex: Exchange): void {
    const x = new HttpExchange(this, ex);
    ex.state = x;
    if (ex.upgrade) {
      this.#upgrade(x);
      return;
    }
    const res = ex.r.res as Tagged<http.ServerResponse>;
    res[kX] = x;
    res.once('close', onClientClose);
    x.start();
  }

  abandon(ex: Exchange): void {
    (ex.state as HttpExchange | undefined)?.abandon();
  }

  close(): void {
    this.agent.destroy();
  }

  lost(): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#onLost();
  }

  /** WebSocket (any Upgrade) pass-through: the app's 101 and then raw bytes both ways. */
  #upgrade(x: HttpExchange): void {
    const u = x.ex.upgrade!;
    const client = u.socket;
    const { fields } = requestFields(u.rawHeaders, u.serverName, true);
    const up = http.request({
      agent: false,
      socketPath: this.socketPath,
      method: u.req.method,
      path: u.target,
      headers: fields as unknown as http.OutgoingHttpHeaders,
      setHost: false,
    });
    x.up = up;
    const fail = (err?: NodeJS.ErrnoException) => {
      if (x.done) return;
      x.done = true;
      if (err && (err.code === 'ECONNREFUSED' || err.code === 'ENOENT')) this.lost();
      if (x.headersSent) client.destroy();
      else writeRawError(client, 503);
      up.destroy();
      x.ex.finish();
    };
    up.on('error', fail);
    client.on('error', () => fail());
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
