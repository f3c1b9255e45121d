/**
 * Router side of the Junction application protocol (docs/app-protocol.md):
 * binary frames over one Unix-socket connection per process, requests
 * multiplexed by stream id, metadata out of band, bodies streamed with
 * per-stream flow control.
 */
import net from 'node:net';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { DROPPED_RESPONSE_FIELDS, type AppConnection, type Exchange } from '../exchange.ts';

export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 12;
/** Largest payload accepted from an app. */
export const MAX_FRAME = 1 << 20;
/** Largest DATA payload sent. */
const MAX_DATA = 1 << 16;
/** The window the router grants an app per stream (response body bytes). */
export const ROUTER_WINDOW = 1 << 20;
/** How long a ready process may take to send its HELLO, ms. */
const HELLO_TIMEOUT = 10_000;

export const T_HELLO = 1, T_REQUEST = 2, T_DATA = 3, T_HEAD = 4, T_CREDIT = 5, T_ABORT = 6, T_ERROR = 7;
export const F_END = 1;
const RF_TLS = 1;

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

/** A HELLO frame. */
export function helloFrame(slots: number, window: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE + 16);
  b.writeUInt32BE(16, 0); b[4] = T_HELLO; b[5] = 0; b.writeUInt16BE(0, 6); b.writeUInt32BE(0, 8);
  b.writeUInt16BE(PROTOCOL_VERSION, 12); b.writeUInt16BE(0, 14); b.writeUInt32BE(process.pid, 16);
  b.writeUInt16BE(slots, 20); b.writeUInt16BE(0, 22); b.writeUInt32BE(window, 24);
  return b;
}

/** Error thrown when a request cannot be encoded (→ 500, spec/applications.md §6.2). */
export class RequestTooLarge extends Error {}

/**
 * Encode the REQUEST frame of `ex` (header included) in one buffer.
 * Throws RequestTooLarge when a string exceeds 65535 bytes.
 */
export function encodeRequest(ex: Exchange, stream: number, end: boolean): Buffer {
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
  b.writeUInt32BE(size, 0); b[4] = T_REQUEST; b[5] = end ? F_END : 0; b.writeUInt16BE(0, 6); b.writeUInt32BE(stream, 8);
  let o = HEADER_SIZE;
  b[o] = r.tls ? RF_TLS : 0; b[o + 1] = 0;
  b.writeUInt16BE(ex.target, o + 2);
  b.writeUInt16BE(raw.length >> 1, o + 4);
  b.writeUInt16BE(0, o + 6);
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
  b.writeUInt16BE(s.length, o);
  return o + 2 + b.write(s, o + 2, 'latin1');
}

/** Decode a HEAD payload into [status, flat field list]. Throws on malformed input. */
export function decodeHead(p: Buffer): { status: number; fields: string[] } {
  let status = p.readUInt16BE(0);
  const n = p.readUInt16BE(2);
  const fields: string[] = [];
  let o = 4;
  for (let i = 0; i < n; i++) {
    const nl = p.readUInt16BE(o); o += 2;
    if (o + nl > p.length) throw new RangeError('field name');
    const name = p.toString('latin1', o, o + nl); o += nl;
    const vl = p.readUInt16BE(o); o += 2;
    if (o + vl > p.length) throw new RangeError('field value');
    const value = p.toString('latin1', o, o + vl); o += vl;
    const lower = name.toLowerCase();
    if (lower === 'status') {
      const s = parseInt(value, 10);
      if (s >= 100 && s <= 999) status = s;
      continue;
    }
    if (DROPPED_RESPONSE_FIELDS.has(lower)) continue;
    fields.push(name, value);
  }
  return { status, fields };
}

class Stream {
  readonly id: number;
  readonly conn: AppProtoConnection;
  readonly ex: Exchange;
  /** Request body bytes the app still accepts. */
  sendWindow: number;
  /** Response bytes written to the client and not yet credited back. */
  unacked = 0;
  headSent = false;
  aborted = false;
  done = false;
  paused = false;
  waitingDrain = false;

  constructor(conn: AppProtoConnection, id: number, ex: Exchange, window: number) {
    this.conn = conn;
    this.id = id;
    this.ex = ex;
    this.sendWindow = window;
  }
}

export interface AppProtoOptions {
  /** Called once when the connection to the process is lost (the process is gone). */
  onLost?: () => void;
}

/** The app protocol transport to one process; create with AppProtoConnection.connect(). */
export class AppProtoConnection implements AppConnection {
  readonly #sock: net.Socket;
  readonly #streams = new Map<number, Stream>();
  readonly #onLost: () => void;
  #next = 1;
  #closed = false;
  /** From the app's HELLO. */
  slots = 1;
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
        sock.on('error', () => {});
        sock.on('close', () => conn.#lost());
        resolve(conn);
      };
      sock.on('data', (chunk: Buffer) => conn.#onData(chunk));
    });
  }

  #hello: (payload: Buffer) => void = () => {};

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
    const s = new Stream(this, id, ex, this.appWindow);
    const r = ex.r;
    const req = r.req as Tagged<IncomingMessage>;
    const hasBody = requestHasBody(req);
    let frame: Buffer;
    try {
      frame = encodeRequest(ex, id, !hasBody);
    } catch {
      ex.fail(500);
      ex.finish();
      return;
    }
    ex.state = s;
    this.#streams.set(id, s);
    this.#sock.write(frame);
    const res = r.res as Tagged<ServerResponse>;
    res[kS] = s;
    res.once('close', onClientClose);
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
    const sock = this.#sock;
    for (let off = 0; off < chunk.length; off += MAX_DATA) {
      const part = off === 0 && chunk.length <= MAX_DATA ? chunk : chunk.subarray(off, off + MAX_DATA);
      sock.cork();
      sock.write(frameHeader(part.length, T_DATA, 0, s.id));
      sock.write(part);
      sock.uncork();
    }
    s.sendWindow -= chunk.length;
    if (s.sendWindow <= 0 && !s.paused) {
      s.paused = true;
      s.ex.r.req.pause();
    }
  }

  endBody(s: Stream): void {
    if (s.done || s.aborted) return;
    this.#sock.write(frameHeader(0, T_DATA, F_END, s.id));
  }

  clientGone(s: Stream): void {
    this.#abort(s);
  }

  #abort(s: Stream): void {
    if (s.done || s.aborted) return;
    s.aborted = true;
    if (!this.#closed) this.#sock.write(frameHeader(0, T_ABORT, 0, s.id));
    if (s.paused) s.ex.r.req.resume(); // drain and discard
  }

  #credit(s: Stream): void {
    if (s.unacked === 0 || this.#closed) return;
    const b = Buffer.allocUnsafe(HEADER_SIZE + 4);
    b.writeUInt32BE(4, 0); b[4] = T_CREDIT; b[5] = 0; b.writeUInt16BE(0, 6); b.writeUInt32BE(s.id, 8);
    b.writeUInt32BE(s.unacked, 12);
    s.unacked = 0;
    this.#sock.write(b);
  }

  /** Response body drained by the client: give the app its window back. */
  drained(s: Stream): void {
    s.waitingDrain = false;
    if (!s.done) this.#credit(s);
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
    switch (type) {
      case T_HEAD: return this.#head(s, flags, p);
      case T_DATA: return this.#data(s, flags, p);
      case T_CREDIT: return this.#creditIn(s, p);
      case T_ERROR: return this.#error(s);
      default: return;
    }
  }

  #head(s: Stream, flags: number, p: Buffer): void {
    if (s.aborted) {
      if (flags & F_END) this.#finish(s);
      return;
    }
    s.ex.activity();
    const res = s.ex.r.res;
    let head: { status: number; fields: string[] };
    try {
      head = decodeHead(p);
      res.writeHead(head.status, head.fields as unknown as OutgoingHttpHeaders);
    } catch {
      // Malformed or unsendable response head: 503 (spec/applications.md §6.2).
      s.ex.fail(503);
      this.#abort(s);
      return;
    }
    s.headSent = true;
    if (flags & F_END) {
      res.end();
      this.#finish(s);
    }
  }

  #data(s: Stream, flags: number, p: Buffer): void {
    if (s.aborted) {
      if (flags & F_END) this.#finish(s);
      return;
    }
    const res = s.ex.r.res as Tagged<ServerResponse>;
    if (!s.headSent) {
      if (p.length > 0) {
        // Body before a head: a broken response.
        s.ex.fail(503);
        this.#abort(s);
        if (flags & F_END) this.#finish(s);
        return;
      }
      if (flags & F_END) {
        // Nothing produced at all: Unit answers 200 text/plain, empty.
        s.ex.activity();
        res.writeHead(200, ['Content-Type', 'text/plain'] as unknown as OutgoingHttpHeaders);
        res.end();
        this.#finish(s);
      }
      return;
    }
    s.ex.activity();
    if (p.length > 0) {
      s.unacked += p.length;
      if (res.write(p)) {
        if (s.unacked >= (ROUTER_WINDOW >> 2)) this.#credit(s);
      } else if (!s.waitingDrain) {
        s.waitingDrain = true;
        res.once('drain', onClientDrain);
      }
    }
    if (flags & F_END) {
      res.end();
      this.#finish(s);
    }
  }

  #creditIn(s: Stream, p: Buffer): void {
    if (p.length < 4) return;
    s.sendWindow += p.readUInt32BE(0);
    if (s.paused && s.sendWindow > 0) {
      s.paused = false;
      s.ex.r.req.resume();
    }
  }

  #error(s: Stream): void {
    if (!s.aborted) s.ex.fail(503);
    this.#finish(s);
  }

  #finish(s: Stream): void {
    if (s.done) return;
    s.done = true;
    this.#streams.delete(s.id);
    const req = s.ex.r.req as Tagged<IncomingMessage>;
    if (req[kS] === s) {
      req.off('data', onBodyData);
      // An unread remainder of the body is of no use to anyone now.
      if (!req.readableEnded) req.resume();
    }
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
    for (const s of streams) {
      if (!s.aborted) s.ex.fail(503);
      s.done = true;
      s.ex.finish();
    }
  }
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

function onClientClose(this: Tagged<ServerResponse>): void {
  const s = this[kS];
  if (s && !s.done) s.conn.clientGone(s);
}

function onClientDrain(this: Tagged<ServerResponse>): void {
  const s = this[kS];
  if (s) s.conn.drained(s);
}
