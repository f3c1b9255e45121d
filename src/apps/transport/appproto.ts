/**
 * Router side of the Junction application protocol (docs/app-protocol.md):
 * binary frames over one Unix-socket connection per process, requests
 * multiplexed (and pipelined) by stream id, metadata out of band, bodies
 * streamed with per-stream flow control, WebSocket messages for ASGI
 * applications (the router terminates WebSocket framing with `ws`).
 *
 * Frames written in one turn of the event loop leave in one system call: the
 * socket is corked at the first write and uncorked by a setImmediate, after
 * every I/O callback of the turn ran (so the requests of many clients that
 * arrived together reach the process together).
 */
import net from 'node:net';
import { ServerResponse, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { DROPPED_RESPONSE_FIELDS, endShort, type AppConnection, type Exchange } from '../exchange.ts';
import { SERVER_NAME } from '../../runtime/version.ts';

export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 12;
/** Largest payload accepted from an app. */
export const MAX_FRAME = 1 << 20;
/** Largest DATA payload sent. */
const MAX_DATA = 1 << 16;
/** The window the router grants an app per stream (response body and WebSocket bytes). */
export const ROUTER_WINDOW = 1 << 20;
/** Largest WebSocket message taken from a client (a bigger one closes with 1009, as Unit). */
export const WS_MAX_MESSAGE = 1 << 20;
/** How long a ready process may take to send its HELLO, ms. */
const HELLO_TIMEOUT = 10_000;

export const T_HELLO = 1, T_REQUEST = 2, T_DATA = 3, T_HEAD = 4, T_CREDIT = 5, T_ABORT = 6, T_ERROR = 7;
export const T_WS_ACCEPT = 16, T_WS_TEXT = 17, T_WS_BINARY = 18, T_WS_CLOSE = 19;
export const F_END = 1, F_MORE = 2;
export const RF_TLS = 1, RF_WEBSOCKET = 2;
/** HELLO feature bit: the app takes WebSocket handshakes (ASGI). */
export const FEATURE_WEBSOCKET = 1;

const kS = Symbol('junction.stream');
type Tagged<T> = T & { [kS]?: Stream };

/** One frame header. */
export function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  h.writeUInt32BE(length, 0);
  h[4] = type;
  h[5] = flags;
  h.writeUInt16BE(0, 6);
  h.writeUInt32BE(stream, 8);
  return h;
}

/** A HELLO frame (the router's: `slots` 0, no queue, no features). */
export function helloFrame(slots: number, window: number, queue = 0, features = 0): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE + 24);
  b.writeUInt32BE(24, 0); b[4] = T_HELLO; b[5] = 0; b.writeUInt16BE(0, 6); b.writeUInt32BE(0, 8);
  b.writeUInt16BE(PROTOCOL_VERSION, 12); b.writeUInt16BE(0, 14); b.writeUInt32BE(process.pid, 16);
  b.writeUInt16BE(slots, 20); b.writeUInt16BE(0, 22); b.writeUInt32BE(window, 24);
  b.writeUInt32BE(queue, 28); b.writeUInt32BE(features, 32);
  return b;
}

/** Error thrown when a request cannot be encoded (→ 500, spec/applications.md §6.2). */
export class RequestTooLarge extends Error {}

/**
 * Encode the REQUEST frame of `ex` (header included) in one buffer.
 * Throws RequestTooLarge when a string exceeds 65535 bytes.
 */
export function encodeRequest(ex: Exchange, stream: number, end: boolean, websocket = false): Buffer {
  const r = ex.upgrade ?? ex.r;
  const req = r.req;
  const raw = r.rawHeaders;
  const method = req.method ?? 'GET';
  const version = req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1';
  const pathLen = r.path.length; // a byte string (one char per byte), as the router decodes it
  // Fixed part + 9 strings' length prefixes + fields' prefixes; latin1 strings are 1 byte per unit.
  let size = 8 + 9 * 2 + method.length + version.length + r.target.length + pathLen + r.query.length +
    r.remoteAddr.length + r.localAddr.length + r.localPort.length + r.serverName.length + raw.length * 2;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i].length > 0xffff) throw new RequestTooLarge();
    size += raw[i].length;
  }
  if (r.target.length > 0xffff || pathLen > 0xffff || raw.length / 2 > 0xffff) throw new RequestTooLarge();
  if (size > MAX_FRAME) throw new RequestTooLarge();
  const b = Buffer.allocUnsafe(HEADER_SIZE + size);
  b.writeUInt32BE(size, 0); b[4] = T_REQUEST; b[5] = end ? F_END : 0; b[6] = 0; b[7] = 0; b.writeUInt32BE(stream, 8);
  let o = HEADER_SIZE;
  b[o] = (r.tls ? RF_TLS : 0) | (websocket ? RF_WEBSOCKET : 0); b[o + 1] = 0;
  b.writeUInt16BE(ex.target, o + 2);
  b.writeUInt16BE(raw.length >> 1, o + 4);
  b[o + 6] = 0; b[o + 7] = 0;
  o += 8;
  o = putLatin1(b, o, method);
  o = putLatin1(b, o, version);
  o = putLatin1(b, o, r.target);
  o = putLatin1(b, o, r.path);
  o = putLatin1(b, o, r.query);
  o = putLatin1(b, o, r.remoteAddr);
  o = putLatin1(b, o, r.localAddr);
  o = putLatin1(b, o, r.localPort);
  o = putLatin1(b, o, r.serverName);
  for (let i = 0; i < raw.length; i++) o = putLatin1(b, o, raw[i]);
  return b;
}

function putLatin1(b: Buffer, o: number, s: string): number {
  const n = s.length;
  b[o] = n >>> 8;
  b[o + 1] = n & 0xff;
  return o + 2 + b.write(s, o + 2, n, 'latin1');
}

/** A decoded HEAD payload. */
export interface Head {
  status: number;
  /** Fields the client gets, as [name, value, …] (the router's own ones dropped). */
  fields: string[];
  /** The app sent a Content-Length. */
  length: boolean;
  /** Its value, -1 when absent or not a number. */
  declared: number;
  /** Offset of the body bytes that follow the fields in the same payload. */
  end: number;
}

/** Decode a HEAD payload. Throws on malformed input. */
export function decodeHead(p: Buffer): Head {
  let status = p.readUInt16BE(0);
  const n = p.readUInt16BE(2);
  const fields: string[] = [];
  let length = false;
  let declared = -1;
  let o = 4;
  for (let i = 0; i < n; i++) {
    const nl = p.readUInt16BE(o); o += 2;
    if (o + nl > p.length) throw new RangeError('field name');
    const name = p.toString('latin1', o, o + nl); o += nl;
    const vl = p.readUInt16BE(o); o += 2;
    if (o + vl > p.length) throw new RangeError('field value');
    const value = p.toString('latin1', o, o + vl); o += vl;
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      length = true;
      if (/^\d{1,15}$/.test(value)) declared = Number(value);
    } else if (lower === 'status') {
      const s = parseInt(value, 10);
      if (s >= 100 && s <= 999) status = s;
      continue;
    } else if (DROPPED_RESPONSE_FIELDS.has(lower)) {
      continue;
    }
    fields.push(name, value);
  }
  return { status, fields, length, declared, end: o };
}

/** Stream kinds: an HTTP exchange, a WebSocket handshake waiting for the app, an open WebSocket. */
const KIND_HTTP = 0, KIND_WS_PENDING = 1, KIND_WS_OPEN = 2;

class Stream {
  readonly id: number;
  readonly conn: AppProtoConnection;
  readonly ex: Exchange;
  readonly req: IncomingMessage;
  /** Where the response goes: the router's, or one made on the upgraded socket. */
  res: ServerResponse | null;
  kind: number;
  /** Request body (or client WebSocket) bytes the app still accepts. */
  sendWindow: number;
  /** Response bytes written to the client and not yet credited back. */
  unacked = 0;
  /** The Content-Length the app announced (-1: none, or a body the client does not get). */
  declared = -1;
  /** Response body bytes written to the client. */
  written = 0;
  headSent = false;
  aborted = false;
  done = false;
  paused = false;
  waitingDrain = false;
  /** Request body frames follow the REQUEST. */
  hasBody = false;
  /** Body bytes reached the app. */
  bodySent = false;
  /** A frame came back from the app for this stream. */
  answered = false;
  ws: WebSocket | null = null;
  /** The app closed the WebSocket. */
  wsAppClosed = false;
  /** Parts of a WebSocket message sent in several frames (F_MORE). */
  wsParts: Buffer[] | null = null;

  constructor(conn: AppProtoConnection, id: number, ex: Exchange, window: number, kind: number) {
    this.conn = conn;
    this.id = id;
    this.ex = ex;
    this.req = (ex.upgrade ?? ex.r).req;
    this.res = ex.upgrade ? null : ex.r.res;
    this.kind = kind;
    this.sendWindow = window;
  }
}

export interface AppProtoOptions {
  /** Called once when the connection to the process is lost (the process is gone). */
  onLost?: () => void;
}

/** The subprotocol and extra fields an app accepted a WebSocket with, on the upgrade request. */
const kProtocol = Symbol('junction.wsProtocol');
const kFields = Symbol('junction.wsFields');
type UpgradeRequest = IncomingMessage & { [kProtocol]?: string; [kFields]?: string[] };

let wss: WebSocketServer | null = null;

/** The one WebSocketServer (no server of its own) that completes handshakes accepted by apps. */
function webSocketServer(): WebSocketServer {
  if (wss) return wss;
  wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: WS_MAX_MESSAGE,
    handleProtocols: (_protocols, req) => (req as UpgradeRequest)[kProtocol] || false,
  });
  wss.on('headers', (headers: string[], req: IncomingMessage) => {
    headers.push(`Server: ${SERVER_NAME}`);
    const f = (req as UpgradeRequest)[kFields];
    if (f) for (let i = 0; i < f.length; i += 2) headers.push(`${f[i]}: ${f[i + 1]}`);
  });
  return wss;
}

/** The app protocol transport to one process; create with AppProtoConnection.connect(). */
export class AppProtoConnection implements AppConnection {
  readonly #sock: net.Socket;
  readonly #streams = new Map<number, Stream>();
  readonly #onLost: () => void;
  #next = 1;
  #closed = false;
  #corked = false;
  /** From the app's HELLO: requests it serves at once (its threads; everything for ASGI). */
  slots = 1;
  /** From the app's HELLO: requests it accepts beyond `slots`, taken in order (pipelining). */
  queue = 0;
  /** From the app's HELLO: FEATURE_* bits. */
  features = 0;
  appWindow = 0;
  appPid = 0;
  // Frame reassembly.
  #chunks: Buffer[] = [];
  #have = 0;
  #need = 0;

  private constructor(sock: net.Socket, opts: AppProtoOptions) {
    this.#sock = sock;
    this.#onLost = opts.onLost ?? (() => {});
  }

  /**
   * Connect to the process at `socketPath` and exchange HELLOs. Rejects when the
   * connection fails, closes before the app's HELLO, or the version differs.
   */
  static connect(socketPath: string, opts: AppProtoOptions = {}): Promise<AppProtoConnection> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(socketPath);
      const conn = new AppProtoConnection(sock, opts);
      let helloSeen = false;
      const onEarlyClose = () => reject(new Error(`connection to ${socketPath} closed before HELLO`));
      // A process that reported ready answers at once; one that does not is broken.
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`no HELLO from ${socketPath} within ${HELLO_TIMEOUT / 1000} s`));
      }, HELLO_TIMEOUT);
      sock.once('error', (e) => { if (!helloSeen) { clearTimeout(timer); reject(e); } });
      sock.once('close', () => { if (!helloSeen) { clearTimeout(timer); onEarlyClose(); } });
      sock.on('connect', () => {
        sock.setNoDelay?.(true);
        sock.write(helloFrame(0, ROUTER_WINDOW));
      });
      conn.#hello = (p) => {
        const version = p.readUInt16BE(0);
        if (version !== PROTOCOL_VERSION) {
          sock.destroy();
          reject(new Error(`app protocol version ${version} is not supported`));
          return;
        }
        helloSeen = true;
        clearTimeout(timer);
        conn.appPid = p.readUInt32BE(4);
        conn.slots = Math.max(1, p.readUInt16BE(8));
        conn.appWindow = p.readUInt32BE(12);
        if (p.length >= 24) {
          conn.queue = p.readUInt32BE(16);
          conn.features = p.readUInt32BE(20);
        }
        sock.on('error', () => {});
        sock.on('close', () => conn.#lost());
        resolve(conn);
      };
      sock.on('data', (chunk: Buffer) => conn.#onData(chunk));
    });
  }

  #hello: (payload: Buffer) => void = () => {};

  /** Write `b`; everything written in this turn of the event loop leaves together. */
  #write(b: Buffer): void {
    if (!this.#corked) {
      this.#corked = true;
      this.#sock.cork();
      setImmediate(uncork, this);
    }
    this.#sock.write(b);
  }

  /** @internal the setImmediate of #write. */
  uncork(): void {
    this.#corked = false;
    this.#sock.uncork();
  }

  dispatch(ex: Exchange): void {
    if (this.#closed) {
      if (ex.requeue()) return;
      ex.fail(503);
      ex.finish();
      return;
    }
    let id = this.#next;
    while (this.#streams.has(id) || id === 0) id = (id + 1) >>> 0;
    this.#next = (id + 1) >>> 0;
    const u = ex.upgrade;
    const websocket = u !== undefined && (this.features & FEATURE_WEBSOCKET) !== 0;
    const s = new Stream(this, id, ex, this.appWindow, websocket ? KIND_WS_PENDING : KIND_HTTP);
    const req = s.req as Tagged<IncomingMessage>;
    const hasBody = u === undefined && requestHasBody(req);
    let frame: Buffer;
    try {
      frame = encodeRequest(ex, id, !hasBody, websocket);
    } catch {
      ex.fail(500);
      ex.finish();
      return;
    }
    ex.state = s;
    s.hasBody = hasBody;
    this.#streams.set(id, s);
    this.#write(frame);
    if (u !== undefined) {
      const sock = u.socket as Tagged<Duplex>;
      sock[kS] = s;
      sock.on('close', onClientClose);
      return;
    }
    const res = s.res as Tagged<ServerResponse>;
    res[kS] = s;
    res.on('close', onClientClose);
    if (hasBody) {
      req[kS] = s;
      req.on('data', onBodyData);
      req.once('end', onBodyEnd);
      req.once('error', onBodyError);
    }
  }

  abandon(ex: Exchange): void {
    const s = ex.state as Stream | undefined;
    if (s) this.#abort(s);
  }

  close(): void {
    this.#sock.destroy();
    this.#lost();
  }

  /** Body bytes from the client → DATA frames within the app's window. */
  sendBody(s: Stream, chunk: Buffer): void {
    if (s.done || s.aborted) return;
    s.bodySent = true;
    for (let off = 0; off < chunk.length; off += MAX_DATA) {
      const part = off === 0 && chunk.length <= MAX_DATA ? chunk : chunk.subarray(off, off + MAX_DATA);
      this.#write(frameHeader(part.length, T_DATA, 0, s.id));
      this.#write(part);
    }
    s.sendWindow -= chunk.length;
    if (s.sendWindow <= 0 && !s.paused) {
      s.paused = true;
      s.req.pause();
    }
  }

  endBody(s: Stream): void {
    if (s.done || s.aborted) return;
    this.#write(frameHeader(0, T_DATA, F_END, s.id));
  }

  clientGone(s: Stream): void {
    this.#abort(s);
  }

  #abort(s: Stream): void {
    if (s.done || s.aborted) return;
    s.aborted = true;
    if (!this.#closed) this.#write(frameHeader(0, T_ABORT, 0, s.id));
    if (s.paused) {
      s.paused = false;
      if (s.ws) s.ws.resume();
      else s.req.resume(); // drain and discard
    }
  }

  #credit(s: Stream, n: number): void {
    if (n === 0 || this.#closed) return;
    const b = Buffer.allocUnsafe(HEADER_SIZE + 4);
    b.writeUInt32BE(4, 0); b[4] = T_CREDIT; b[5] = 0; b[6] = 0; b[7] = 0; b.writeUInt32BE(s.id, 8);
    b.writeUInt32BE(n, 12);
    this.#write(b);
  }

  /** Response body drained by the client: give the app its window back. */
  drained(s: Stream): void {
    s.waitingDrain = false;
    if (!s.done && s.unacked > 0) {
      const n = s.unacked;
      s.unacked = 0;
      this.#credit(s, n);
    }
  }

  #onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.#have > 0) {
      this.#chunks.push(chunk);
      this.#have += chunk.length;
      if (this.#have < this.#need) return;
      buf = Buffer.concat(this.#chunks, this.#have);
      this.#chunks = [];
      this.#have = 0;
    }
    let o = 0;
    const n = buf.length;
    while (n - o >= HEADER_SIZE) {
      const len = buf.readUInt32BE(o);
      if (len > MAX_FRAME) { this.#protocolError(); return; }
      const end = o + HEADER_SIZE + len;
      if (end > n) break;
      this.#frame(buf[o + 4], buf[o + 5], buf.readUInt32BE(o + 8), buf.subarray(o + HEADER_SIZE, end));
      if (this.#closed) return;
      o = end;
    }
    if (o < n) {
      const rest = o === 0 ? buf : buf.subarray(o);
      this.#chunks.push(rest);
      this.#have = rest.length;
      this.#need = rest.length >= 4 ? HEADER_SIZE + rest.readUInt32BE(0) : HEADER_SIZE;
    }
  }

  #frame(type: number, flags: number, id: number, p: Buffer): void {
    if (id === 0) {
      if (type === T_HELLO && p.length >= 16) this.#hello(p);
      return;
    }
    const s = this.#streams.get(id);
    if (!s) return;
    s.answered = true;
    switch (type) {
      case T_HEAD: return this.#head(s, flags, p);
      case T_DATA: return this.#data(s, flags, p);
      case T_CREDIT: return this.#creditIn(s, p);
      case T_ERROR: return this.#error(s);
      case T_WS_ACCEPT: return this.#wsAccept(s, p);
      case T_WS_TEXT: case T_WS_BINARY: return this.#wsOut(s, type, flags, p);
      case T_WS_CLOSE: return this.#wsCloseOut(s, p);
      default: return;
    }
  }

  /** The response of an upgrade request answered with HTTP (a WSGI app, or a denied WebSocket). */
  #upgradeResponse(s: Stream): ServerResponse {
    const u = s.ex.upgrade!;
    const socket = u.socket as net.Socket;
    const res = new ServerResponse(u.req);
    res.assignSocket(socket);
    res.shouldKeepAlive = false;
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.end();
    });
    s.res = res;
    s.kind = KIND_HTTP;
    return res;
  }

  #head(s: Stream, flags: number, p: Buffer): void {
    if (s.aborted) {
      if (flags & F_END) this.#finish(s);
      return;
    }
    if (s.headSent || s.kind === KIND_WS_OPEN) {
      this.#failStream(s, flags);
      return;
    }
    s.ex.activity();
    let head: Head;
    try {
      head = decodeHead(p);
    } catch {
      // Malformed response head: 503 (spec/applications.md §6.2).
      this.#failStream(s, flags);
      return;
    }
    const res = s.res ?? this.#upgradeResponse(s);
    if (s.ex.upgrade) head.fields.push('Server', SERVER_NAME);
    const body = head.end < p.length ? p.subarray(head.end) : null;
    try {
      if (head.declared >= 0 && s.req.method !== 'HEAD' && head.status !== 204 && head.status !== 304) s.declared = head.declared;
      if ((flags & F_END) && head.length && (body?.length ?? 0) >= s.declared) {
        // A complete response of known length: one write.
        res.writeHead(head.status, head.fields as unknown as OutgoingHttpHeaders);
        s.headSent = true;
        // A small body as Latin-1 text goes out with the head in one plain write.
        res.end(body ?? undefined);
        this.#finish(s);
        return;
      }
      res.writeHead(head.status, head.fields as unknown as OutgoingHttpHeaders);
    } catch {
      this.#failStream(s, flags);
      return;
    }
    s.headSent = true;
    if (body !== null) this.#body(s, res, body);
    if (flags & F_END) this.#end(s, res);
  }

  /** The app's response is complete: end it (closing the connection when it fell short of its Content-Length). */
  #end(s: Stream, res: ServerResponse): void {
    if (s.written < s.declared) endShort(res);
    else res.end();
    this.#finish(s);
  }

  /** A broken response (bad head, head twice): 503 or a closed connection; the stream ends on the app's terminal frame. */
  #failStream(s: Stream, flags: number): void {
    s.ex.fail(503);
    this.#abort(s);
    if (flags & F_END) this.#finish(s);
  }

  #body(s: Stream, res: ServerResponse, p: Buffer): void {
    s.unacked += p.length;
    s.written += p.length;
    if (res.write(p)) {
      if (s.unacked >= (ROUTER_WINDOW >> 2)) {
        const n = s.unacked;
        s.unacked = 0;
        this.#credit(s, n);
      }
    } else if (!s.waitingDrain) {
      s.waitingDrain = true;
      res.once('drain', onClientDrain);
    }
  }

  #data(s: Stream, flags: number, p: Buffer): void {
    if (s.aborted || s.kind === KIND_WS_OPEN) {
      // An open WebSocket ends with DATA END (after the app's close frame); no body.
      if (flags & F_END) this.#finish(s);
      return;
    }
    if (!s.headSent) {
      if (p.length > 0) {
        // Body before a head: a broken response.
        this.#failStream(s, flags);
        return;
      }
      if (flags & F_END) {
        s.ex.activity();
        // Nothing produced at all: Unit answers 200 text/plain, empty; a WebSocket
        // handshake the app neither accepted nor denied is refused with 403.
        const deny = s.kind === KIND_WS_PENDING;
        const res = s.res ?? this.#upgradeResponse(s);
        const fields = deny ? [] : ['Content-Type', 'text/plain'];
        if (s.ex.upgrade) fields.push('Server', SERVER_NAME);
        res.writeHead(deny ? 403 : 200, fields as unknown as OutgoingHttpHeaders);
        res.end();
        this.#finish(s);
      }
      return;
    }
    s.ex.activity();
    const res = s.res!;
    if (p.length > 0) this.#body(s, res, p);
    if (flags & F_END) this.#end(s, res);
  }

  #creditIn(s: Stream, p: Buffer): void {
    if (p.length < 4) return;
    s.sendWindow += p.readUInt32BE(0);
    if (s.paused && s.sendWindow > 0) {
      s.paused = false;
      if (s.ws) s.ws.resume();
      else s.req.resume();
    }
  }

  #error(s: Stream): void {
    if (s.ws) {
      // The launcher sent its close frame (1011) before this.
      if (!s.wsAppClosed) s.ws.close(1011);
    } else if (!s.aborted) {
      s.ex.fail(503);
    }
    this.#finish(s);
  }

  // -- WebSocket (ASGI) ------------------------------------------------------

  /** The app accepted the handshake: complete it (101) and relay messages both ways. */
  #wsAccept(s: Stream, p: Buffer): void {
    if (s.kind !== KIND_WS_PENDING || s.aborted) return;
    const u = s.ex.upgrade!;
    const req = u.req as UpgradeRequest;
    let o = 0;
    const pl = p.readUInt16BE(o); o += 2;
    req[kProtocol] = p.toString('latin1', o, o + pl); o += pl;
    const n = p.readUInt16BE(o); o += 2;
    const fields: string[] = [];
    for (let i = 0; i < n; i++) {
      const nl = p.readUInt16BE(o); o += 2;
      const name = p.toString('latin1', o, o + nl); o += nl;
      const vl = p.readUInt16BE(o); o += 2;
      const value = p.toString('latin1', o, o + vl); o += vl;
      const lower = name.toLowerCase();
      if (DROPPED_RESPONSE_FIELDS.has(lower) || lower === 'sec-websocket-protocol' && pl > 0) continue;
      fields.push(name, value);
    }
    req[kFields] = fields;
    s.kind = KIND_WS_OPEN;
    s.headSent = true;
    s.ex.tunnel();
    const socket = u.socket as Tagged<Duplex>;
    socket.off('close', onClientClose);
    webSocketServer().handleUpgrade(u.req, socket, u.head, (ws) => {
      s.ws = ws;
      (ws as Tagged<WebSocket>)[kS] = s;
      ws.on('message', onWsMessage);
      ws.on('close', onWsClose);
      ws.on('error', onWsError);
    });
    if (!s.ws) {
      // ws refused the handshake (it answered 400 and closed the socket).
      this.#abort(s);
    }
  }

  /** A message from the client → the app, within its window. */
  wsIn(s: Stream, data: Buffer, binary: boolean): void {
    if (s.done || s.aborted || this.#closed) return;
    // At most WS_MAX_MESSAGE (= MAX_FRAME) bytes: one frame.
    this.#write(frameHeader(data.length, binary ? T_WS_BINARY : T_WS_TEXT, 0, s.id));
    if (data.length) this.#write(data);
    s.sendWindow -= data.length;
    if (s.sendWindow <= 0 && !s.paused && s.ws) {
      s.paused = true;
      s.ws.pause();
    }
  }

  /** The client's WebSocket closed (close frame or lost connection): the app gets websocket.disconnect. */
  wsClosed(s: Stream, code: number): void {
    if (s.done || this.#closed) return;
    // No status in the close frame → 1000; connection lost without one → 1001 (as Unit).
    const c = code === 1005 ? 1000 : code === 1006 ? 1001 : code;
    const b = frameHeader(2, T_WS_CLOSE, 0, s.id);
    const payload = Buffer.allocUnsafe(2);
    payload.writeUInt16BE(c & 0xffff, 0);
    this.#write(Buffer.concat([b, payload]));
  }

  /** A message from the app → the client; the window comes back once it is written. */
  #wsOut(s: Stream, type: number, flags: number, p: Buffer): void {
    const ws = s.ws;
    if (!ws || s.aborted || s.wsAppClosed) return;
    if (flags & F_MORE) {
      (s.wsParts ??= []).push(p);
      return;
    }
    let data = p;
    if (s.wsParts) {
      s.wsParts.push(p);
      data = Buffer.concat(s.wsParts);
      s.wsParts = null;
    }
    const n = data.length;
    ws.send(data, { binary: type === T_WS_BINARY }, () => {
      if (!s.done) this.#credit(s, n);
    });
  }

  #wsCloseOut(s: Stream, p: Buffer): void {
    const ws = s.ws;
    if (!ws || s.wsAppClosed) return;
    s.wsAppClosed = true;
    const code = p.length >= 2 ? p.readUInt16BE(0) : 1000;
    const reason = p.length > 2 ? p.subarray(2) : undefined;
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
  }

  #finish(s: Stream): void {
    if (s.done) return;
    s.done = true;
    this.#streams.delete(s.id);
    const req = s.req as Tagged<IncomingMessage>;
    if (req[kS] === s) {
      req.off('data', onBodyData);
      // An unread remainder of the body is of no use to anyone now.
      if (!req.readableEnded) req.resume();
    }
    if (s.ws && !s.wsAppClosed && s.ws.readyState === 1) s.ws.close(1000);
    s.ex.finish();
  }

  #protocolError(): void {
    this.#sock.destroy();
    this.#lost();
  }

  #lost(): void {
    if (this.#closed) return;
    this.#closed = true;
    // First tell the pool, so that finishing the streams below never dispatches here again.
    this.#onLost();
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    // The app takes requests in order, `slots` at a time: those after the first
    // `slots` open ones were never taken, and go to another process when nothing
    // of them is consumed yet (Unit's shared queue would have kept them).
    let taken = 0;
    for (const s of streams) {
      const maybeTaken = taken++ < this.slots;
      s.done = true;
      if (!maybeTaken && !s.aborted && !s.answered && !s.hasBody && !s.ws) {
        detach(s);
        if (s.ex.requeue(false)) continue;
      }
      if (s.ws) s.ws.terminate();
      else if (!s.aborted) s.ex.fail(503);
      s.ex.finish();
    }
  }
}

function detach(s: Stream): void {
  const u = s.ex.upgrade;
  if (u) (u.socket as Tagged<Duplex>).off('close', onClientClose);
  else if (s.res) s.res.off('close', onClientClose);
}

function uncork(c: AppProtoConnection): void {
  c.uncork();
}

function requestHasBody(req: IncomingMessage): boolean {
  if (req.readableEnded) return false;
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) return true;
  const cl = req.headers['content-length'];
  return cl !== undefined && cl !== '0';
}

function onBodyData(this: Tagged<IncomingMessage>, chunk: Buffer): void {
  const s = this[kS];
  if (s) s.conn.sendBody(s, chunk);
}

function onBodyEnd(this: Tagged<IncomingMessage>): void {
  const s = this[kS];
  if (s) s.conn.endBody(s);
}

function onBodyError(this: Tagged<IncomingMessage>): void {
  const s = this[kS];
  if (s) s.conn.clientGone(s);
}

function onClientClose(this: Tagged<ServerResponse | Duplex>): void {
  const s = this[kS];
  if (s && !s.done) s.conn.clientGone(s);
}

function onClientDrain(this: Tagged<ServerResponse>): void {
  const s = this[kS];
  if (s) s.conn.drained(s);
}

function onWsMessage(this: Tagged<WebSocket>, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
  const s = this[kS];
  if (!s) return;
  const b = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  s.conn.wsIn(s, b, isBinary);
}

function onWsClose(this: Tagged<WebSocket>, code: number): void {
  const s = this[kS];
  if (s) s.conn.wsClosed(s, code);
}

function onWsError(this: Tagged<WebSocket>): void {
  // A protocol error of the client (bad frame, message too big): ws closes the
  // connection itself and reports the code through 'close'.
}
