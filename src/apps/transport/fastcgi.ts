/**
 * FastCGI client for application processes that serve FastCGI on their
 * listening socket (the `php` type: Debian's `php-cgi`).
 *
 * One FastCgiConnection per application process. It keeps one connection to
 * the process open across requests (FCGI_KEEP_CONN) and runs one request at a
 * time on it (request id 1; php-cgi neither multiplexes nor takes a second
 * connection while busy). Bodies are streamed both ways with back-pressure.
 *
 * Response semantics follow spec/applications.md §4.1 and §6.2:
 * - the CGI response header (`Status:`, `Location`, any other fields, repeated
 *   fields such as `Set-Cookie` kept apart) becomes the HTTP response; the
 *   status defaults to 200, or 302 with a `Location` and no `Status`;
 * - no output at all → 200, `Content-Type: text/plain`, empty body;
 * - the process dies, closes the connection, or sends a malformed response
 *   before the header is complete → the router's 503; after it → the client
 *   connection is closed (body truncated);
 * - a response header over 1 MiB counts as malformed; request fields too
 *   large for one FastCGI record (64 KiB a field) → 500, nothing sent;
 * - a client leaving before its body was passed on: the connection is dropped
 *   (php-cgi would wait for the rest) and a new one opened for the next request;
 * - FCGI_STDERR text (PHP's log messages) goes to the error log, one line per
 *   line of text: `[notice] <pid>#<pid> [unit] #<stream>: php message: <text>`.
 *
 * Protocol: FastCGI Specification 1.0 (Open Market, 1996), Responder role.
 * Written here rather than taken from npm: the published clients open and
 * pool connections themselves, which here is the process pool's job.
 */
import net from 'node:net';
import type { AppRequest } from '../types.ts';
import { formatLogLine } from '../../runtime/log.ts';

const VERSION_1 = 1;
const BEGIN_REQUEST = 1;
const END_REQUEST = 3;
const PARAMS = 4;
const STDIN = 5;
const STDOUT = 6;
const STDERR = 7;
const GET_VALUES = 9;
const GET_VALUES_RESULT = 10;
const ROLE_RESPONDER = 1;
const FLAG_KEEP_CONN = 1;
const REQUEST_COMPLETE = 0;
/** Records carry at most 65535 content bytes. */
const MAX_CONTENT = 0xffff;
/** One request at a time per connection: always the same id. */
const REQUEST_ID = 1;
/** Largest CGI response header accepted before the response counts as malformed. */
const MAX_RESPONSE_HEADER = 1 << 20;

const EMPTY_PARAMS = recordHeader(PARAMS, REQUEST_ID, 0);
const EMPTY_STDIN = recordHeader(STDIN, REQUEST_ID, 0);
const BEGIN = Buffer.concat([
  recordHeader(BEGIN_REQUEST, REQUEST_ID, 8),
  Buffer.from([0, ROLE_RESPONDER, FLAG_KEEP_CONN, 0, 0, 0, 0, 0]),
]);

/** Stream numbers for `[unit] #N:` log prefixes, unique within this process. */
let streamSeq = 0;

/**
 * FastCGI parameters as a flat list `[name, value, name, value, …]` of byte
 * strings (one char per byte, as the router keeps paths and header values):
 * each is sent as `Buffer.from(s, 'latin1')`.
 */
export type FastCgiParams = string[];

export interface FastCgiOptions {
  /** Pid of the application process, for the `<pid>#<pid>` of its log lines (default: this process). */
  pid?: number;
  /**
   * The process's `PHP_FCGI_MAX_REQUESTS` (0 = unlimited): after that many
   * requests it closes the connection and exits, so the connection reports
   * itself unavailable as soon as the last one ends.
   */
  maxRequests?: number;
  /** Sink for formatted error-log lines (default: this process's stderr, which main copies into the log). */
  writeLog?: (line: string) => void;
}

/** Callbacks of one request. */
export interface FastCgiHooks {
  /**
   * The application sent something (response header or body bytes): the
   * moment to re-arm a `limits.timeout` inactivity timer (§2.4).
   */
  onActivity?(): void;
  /**
   * Called once, when the process is done with the request: `true` after its
   * FCGI_END_REQUEST, `false` when the connection broke. The response to the
   * client has been completed, failed with 503 or closed by then. Check
   * `connection.available` afterwards: it turns false for good when the
   * process is gone or about to exit.
   */
  onDone(ok: boolean): void;
  /**
   * Answer the client with the router's error page (or close its connection
   * after the head); default `r.fail`. The pool passes its idempotent
   * Exchange.fail here.
   */
  fail?(status: number): void;
}

/** Handle on a running request. */
export interface FastCgiExchange {
  /**
   * Give up on the response (`limits.timeout` expired): 503 when nothing was
   * sent yet, else the client connection is closed. The process keeps
   * running the request; its output is read and discarded, and `onDone`
   * fires when it ends (Unit: the process is not killed).
   */
  abandon(): void;
}

function lengthSize(n: number): number {
  return n < 128 ? 1 : 4;
}

function recordHeader(type: number, id: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b[0] = VERSION_1;
  b[1] = type;
  b.writeUInt16BE(id, 2);
  b.writeUInt16BE(length, 4);
  b[6] = 0; // padding
  b[7] = 0;
  return b;
}

/**
 * Encode name-value pairs (FastCGI §3.4; `pairs` as FastCgiParams) into
 * records of `type`, followed by the empty record ending the stream when
 * `terminate` is set. Every pair stays within one record: php-cgi decodes
 * each record on its own.
 * @throws RangeError when one pair needs more than 65535 bytes (the request
 *   fields are too large for the transport: Unit answers 500).
 */
export function encodeNameValues(type: number, pairs: string[], terminate: boolean): Buffer {
  const id = type === GET_VALUES ? 0 : REQUEST_ID;
  let size = 0;
  for (let i = 0; i < pairs.length; i++) size += lengthSize(pairs[i].length) + pairs[i].length;
  if (pairs.length % 2) size += 1;
  // Room for a record header per started 64 KiB, and the terminator.
  const out = Buffer.allocUnsafe(size + 8 * (Math.ceil(size / MAX_CONTENT) + 1) + 8 * (pairs.length / 2 + 2));
  let head = 0;
  let o = 8;
  const close = () => {
    out.set(recordHeader(type, id, o - head - 8), head);
    head = o;
    o += 8;
  };
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i];
    const value = pairs[i + 1] ?? '';
    const need = lengthSize(name.length) + lengthSize(value.length) + name.length + value.length;
    if (need > MAX_CONTENT) throw new RangeError(`FastCGI parameter ${name} too large (${need} bytes)`);
    if (o - head - 8 + need > MAX_CONTENT) close();
    for (const len of [name.length, value.length]) {
      if (len < 128) out[o++] = len;
      else { out.writeUInt32BE((len | 0x80000000) >>> 0, o); o += 4; }
    }
    o += out.write(name, o, 'latin1');
    o += out.write(value, o, 'latin1');
  }
  if (o - head - 8 > 0) close();
  o -= 8; // the header room close() keeps for a next record
  if (terminate) {
    out.set(recordHeader(type, id, 0), o);
    o += 8;
  }
  return out.subarray(0, o);
}

/** Body bytes as STDIN records (each at most 65535 bytes). */
function stdinRecords(data: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += MAX_CONTENT) {
    const chunk = data.subarray(at, Math.min(data.length, at + MAX_CONTENT));
    parts.push(recordHeader(STDIN, REQUEST_ID, chunk.length), chunk);
  }
  return parts;
}

/**
 * Incremental record reader: feed socket chunks, get (type, content) calls.
 * Content of STDOUT/STDERR is handed over in pieces as it arrives (no copy);
 * END_REQUEST and GET_VALUES_RESULT are small and passed whole.
 */
class RecordReader {
  #head = Buffer.alloc(8);
  #headLen = 0;
  #type = 0;
  #remaining = 0;
  #padding = 0;
  #small: Buffer[] = [];
  readonly onContent: (type: number, data: Buffer) => void;
  readonly onRecordEnd: (type: number, content: Buffer | null) => void;

  constructor(onContent: (type: number, data: Buffer) => void, onRecordEnd: (type: number, content: Buffer | null) => void) {
    this.onContent = onContent;
    this.onRecordEnd = onRecordEnd;
  }

  /** @throws Error on a record that is not FastCGI version 1. */
  push(chunk: Buffer): void {
    let o = 0;
    while (o < chunk.length) {
      if (this.#remaining === 0 && this.#padding === 0 && this.#headLen < 8) {
        const n = Math.min(8 - this.#headLen, chunk.length - o);
        chunk.copy(this.#head, this.#headLen, o, o + n);
        this.#headLen += n;
        o += n;
        if (this.#headLen < 8) return;
        if (this.#head[0] !== VERSION_1) throw new Error(`FastCGI: bad record version ${this.#head[0]}`);
        this.#type = this.#head[1];
        this.#remaining = this.#head.readUInt16BE(4);
        this.#padding = this.#head[6];
        if (this.#remaining === 0) this.#endRecord();
        continue;
      }
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, chunk.length - o);
        const piece = chunk.subarray(o, o + n);
        o += n;
        this.#remaining -= n;
        if (this.#type === STDOUT || this.#type === STDERR) this.onContent(this.#type, piece);
        else this.#small.push(piece);
        if (this.#remaining === 0) this.#endRecord();
        continue;
      }
      const n = Math.min(this.#padding, chunk.length - o);
      o += n;
      this.#padding -= n;
      if (this.#padding === 0) this.#headLen = 0;
    }
  }

  #endRecord(): void {
    const small = this.#small.length ? Buffer.concat(this.#small) : null;
    this.#small = [];
    if (this.#padding === 0) this.#headLen = 0;
    this.onRecordEnd(this.#type, small);
  }
}

/** Parsed CGI response header. */
interface CgiHead { status: number; fields: string[] }

/**
 * Parse a CGI response header block (RFC 3875 §6.2, without the blank line).
 * @returns null when a line has no colon or `Status` is not a 3-digit code.
 */
export function parseCgiHeader(text: string): CgiHead | null {
  const fields: string[] = [];
  let status = 0;
  let location = false;
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    const lower = name.toLowerCase();
    if (lower === 'status') {
      const m = /^(\d{3})(?:\s|$)/.exec(value);
      if (!m) return null;
      status = Number(m[1]);
      continue;
    }
    if (lower === 'location') location = true;
    fields.push(name, value);
  }
  return { status: status || (location ? 302 : 200), fields };
}

/** Find the end of the CGI header (`\r\n\r\n` or `\n\n`): [index of the blank line end, header text end]. */
function headerEnd(buf: Buffer): [number, number] | null {
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return [i + 2, i];
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return [i + 3, i];
  }
  return null;
}

/** State of the request in flight. */
interface Exchange {
  r: AppRequest;
  hooks: FastCgiHooks;
  stream: number;
  /** STDOUT bytes before the header was complete. */
  head: Buffer[];
  headLength: number;
  headerDone: boolean;
  /** Output is no longer forwarded (client gone, timed out, or response failed). */
  discard: boolean;
  /** Request body fully sent (empty STDIN written). */
  inputDone: boolean;
  /** Partial FCGI_STDERR line. */
  stderr: Buffer | null;
  cleanup: () => void;
}

function failExchange(ex: Exchange, status: number): void {
  if (ex.hooks.fail) ex.hooks.fail(status);
  else ex.r.fail(status);
}

/**
 * The client side of one application process's FastCGI socket.
 *
 *   const conn = await FastCgiConnection.open(socketPath, { pid, maxRequests });
 *   conn.request(r, params, { onDone(ok) { … } });   // one at a time
 *   conn.close();                                     // when retiring the process
 */
export class FastCgiConnection {
  readonly path: string;
  readonly pid: number;
  readonly maxRequests: number;
  #writeLog: (line: string) => void;
  #socket: net.Socket | null = null;
  #connecting: Promise<net.Socket> | null = null;
  #exchange: Exchange | null = null;
  #started = 0;
  #closed = false;
  #closing = false;
  #closeListeners: Array<() => void> = [];
  #reader: RecordReader;
  /** The socket is paused until the client response drains. */
  #awaitingDrain = false;

  constructor(path: string, options: FastCgiOptions = {}) {
    this.path = path;
    this.pid = options.pid ?? process.pid;
    this.maxRequests = options.maxRequests ?? 0;
    this.#writeLog = options.writeLog ?? ((line) => { process.stderr.write(line); });
    this.#reader = new RecordReader(
      (type, data) => this.#content(type, data),
      (type, content) => this.#recordEnd(type, content),
    );
  }

  /**
   * Wait until the process answers FastCGI on `path` (an FCGI_GET_VALUES
   * round trip on a throw-away connection: php-cgi has finished its startup
   * by then), and return a connection ready for requests.
   * @throws Error (log-ready text) when the socket refuses the connection or
   *   is closed without an answer — the process failed to start.
   */
  static async open(path: string, options: FastCgiOptions = {}): Promise<FastCgiConnection> {
    await probe(path);
    const conn = new FastCgiConnection(path, options);
    await conn.#connect();
    return conn;
  }

  /** True while a request may be started: connected or reconnectable, not busy, not closed. */
  get available(): boolean {
    return !this.#closed && !this.#closing && this.#exchange === null;
  }

  /** True while a request is in flight. */
  get busy(): boolean {
    return this.#exchange !== null;
  }

  /** True once the connection is unusable for good (process gone or retiring, or close() called). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Requests started on this process so far. */
  get requests(): number {
    return this.#started;
  }

  /** Call `fn` once when the connection becomes unusable for good. */
  onClose(fn: () => void): void {
    if (this.#closed) queueMicrotask(fn);
    else this.#closeListeners.push(fn);
  }

  /**
   * Run one request: send FCGI_BEGIN_REQUEST (keep-conn), `params`, the body of
   * `r.req` as FCGI_STDIN (streamed; or `body` when given, already read), and
   * write the response to `r.res`.
   * @param params must carry CONTENT_LENGTH for any body (php-cgi reads exactly that many bytes).
   * @throws Error when the connection is not `available`.
   */
  request(r: AppRequest, params: FastCgiParams, hooks: FastCgiHooks, body?: Buffer): FastCgiExchange {
    if (!this.available) throw new Error(this.#closed ? 'FastCGI connection closed' : 'FastCGI connection busy');
    this.#started++;
    const ex: Exchange = {
      r, hooks, stream: ++streamSeq, head: [], headLength: 0, headerDone: false,
      discard: false, inputDone: false, stderr: null, cleanup: () => {},
    };
    this.#exchange = ex;
    const onResClose = () => {
      // Client gone before the response ended: keep reading the process's output, drop it.
      if (!ex.discard && !r.res.writableFinished) ex.discard = true;
      this.#socket?.resume();
    };
    r.res.on('close', onResClose);
    ex.cleanup = () => { r.res.off('close', onResClose); };

    let encoded: Buffer;
    try {
      encoded = encodeNameValues(PARAMS, params, true);
    } catch {
      // Fields too large for the transport (Unit: 500); the connection is untouched.
      this.#started--;
      ex.discard = true;
      failExchange(ex, 500);
      queueMicrotask(() => this.#end(ex, true));
      return { abandon: () => {} };
    }
    const begin = [BEGIN, encoded];
    const socket = this.#socket;
    if (socket) this.#start(ex, socket, begin, body);
    else {
      this.#connect().then(
        (s) => { if (this.#exchange === ex) this.#start(ex, s, begin, body); },
        () => { if (this.#exchange === ex) this.#broken(ex); },
      );
    }
    return { abandon: () => this.#abandon(ex) };
  }

  /**
   * Stop using the process: the connection is ended now when idle, or right
   * after the request in flight. php-cgi then waits in accept(); SIGTERM
   * (or closing its socket) ends it.
   */
  close(): void {
    if (this.#closed) return;
    this.#closing = true;
    if (this.#exchange === null) this.#finish('end');
  }

  /** End the connection at once; a request in flight fails (503 or closed client connection). */
  destroy(): void {
    const ex = this.#exchange;
    this.#closing = true;
    if (ex) this.#broken(ex);
    else this.#finish('destroy');
  }

  #connect(): Promise<net.Socket> {
    if (this.#connecting) return this.#connecting;
    this.#connecting = new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(this.path);
      const fail = (err: Error) => { this.#connecting = null; reject(err); };
      s.once('error', fail);
      s.once('connect', () => {
        s.off('error', fail);
        this.#connecting = null;
        if (this.#closed) {
          // close()/destroy() came while connecting.
          s.destroy();
          reject(new Error('FastCGI connection closed'));
          return;
        }
        this.#attach(s);
        resolve(s);
      });
    });
    return this.#connecting;
  }

  #attach(s: net.Socket): void {
    this.#socket = s;
    // A new connection starts a new record stream.
    this.#reader = new RecordReader(
      (type, data) => this.#content(type, data),
      (type, content) => this.#recordEnd(type, content),
    );
    s.on('data', (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch {
        const ex = this.#exchange;
        if (ex) this.#broken(ex);
        else this.#lost(s);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (this.#socket !== s) return;
      const ex = this.#exchange;
      if (ex) this.#broken(ex);
      else this.#lost(s);
    });
  }

  /** The peer closed an idle connection: php-cgi closes a kept connection only when it exits. */
  #lost(s: net.Socket): void {
    if (this.#socket === s) this.#socket = null;
    this.#finish('none');
  }

  #start(ex: Exchange, socket: net.Socket, begin: Buffer[], body: Buffer | undefined): void {
    const req = ex.r.req;
    if (body === undefined && req.destroyed) {
      // The client left before its body could be read: nothing was sent, nothing to run.
      this.#started--;
      ex.discard = true;
      queueMicrotask(() => this.#end(ex, true));
      return;
    }
    if (body !== undefined) {
      socket.write(Buffer.concat([...begin, ...stdinRecords(body), EMPTY_STDIN]));
      ex.inputDone = true;
      return;
    }
    if (req.complete && req.readableLength === 0 && req.readableEnded) {
      socket.write(Buffer.concat([...begin, EMPTY_STDIN]));
      ex.inputDone = true;
      return;
    }
    socket.write(Buffer.concat(begin));
    const onData = (chunk: Buffer) => {
      if (this.#exchange !== ex) return;
      let ok = true;
      for (const part of stdinRecords(chunk)) ok = socket.write(part) && ok;
      if (!ok) {
        req.pause();
        socket.once('drain', () => req.resume());
      }
    };
    const onEnd = () => {
      if (this.#exchange !== ex || ex.inputDone) return;
      ex.inputDone = true;
      socket.write(EMPTY_STDIN);
    };
    const onClose = () => {
      // The client went away before the whole body was passed on (Node drops
      // what it had buffered): php-cgi would wait for the rest forever, so this
      // connection goes (the process itself stays).
      if (this.#exchange === ex && !ex.inputDone) this.#broken(ex, true);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    const prev = ex.cleanup;
    ex.cleanup = () => {
      prev();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
    };
    req.resume();
  }

  #content(type: number, data: Buffer): void {
    const ex = this.#exchange;
    if (!ex) return;
    if (type === STDERR) {
      this.#stderr(ex, data);
      return;
    }
    ex.hooks.onActivity?.();
    if (ex.discard) return;
    if (!ex.headerDone) {
      ex.head.push(data);
      ex.headLength += data.length;
      const all = ex.head.length === 1 ? ex.head[0] : Buffer.concat(ex.head);
      ex.head = [all];
      const end = headerEnd(all);
      if (end === null) {
        if (ex.headLength > MAX_RESPONSE_HEADER) this.#malformed(ex);
        return;
      }
      ex.head = [];
      if (!this.#sendHead(ex, all.toString('latin1', 0, end[1]))) return;
      if (end[0] < all.length) this.#write(ex, all.subarray(end[0]));
      return;
    }
    this.#write(ex, data);
  }

  /** Write the parsed header to the client. @returns false when it was malformed (503 sent). */
  #sendHead(ex: Exchange, text: string): boolean {
    const head = parseCgiHeader(text);
    if (head === null) {
      this.#malformed(ex);
      return false;
    }
    const res = ex.r.res;
    ex.headerDone = true;
    if (res.headersSent || res.writableEnded) {
      ex.discard = true;
      return true;
    }
    try {
      const seen = new Set<string>();
      const f = head.fields;
      for (let i = 0; i < f.length; i += 2) {
        const lower = f[i].toLowerCase();
        if (!seen.has(lower)) { seen.add(lower); res.removeHeader(f[i]); }
        res.appendHeader(f[i], f[i + 1]);
      }
      res.writeHead(head.status);
    } catch {
      // Node refused a field name or value (control characters): malformed response.
      ex.headerDone = false;
      this.#malformed(ex);
      return false;
    }
    return true;
  }

  #write(ex: Exchange, data: Buffer): void {
    if (ex.discard || data.length === 0) return;
    const res = ex.r.res;
    if (!res.write(data) && !this.#awaitingDrain) {
      const socket = this.#socket;
      if (!socket) return;
      this.#awaitingDrain = true;
      socket.pause();
      res.once('drain', () => {
        this.#awaitingDrain = false;
        socket.resume();
      });
    }
  }

  #stderr(ex: Exchange, data: Buffer): void {
    let buf = ex.stderr ? Buffer.concat([ex.stderr, data]) : data;
    let nl: number;
    while ((nl = buf.indexOf(10)) >= 0) {
      this.#logPhp(ex, buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    ex.stderr = buf.length ? Buffer.from(buf) : null;
  }

  /** Flush a last line without its newline. */
  #flushStderr(ex: Exchange): void {
    if (ex.stderr) this.#logPhp(ex, ex.stderr);
    ex.stderr = null;
  }

  #logPhp(ex: Exchange, bytes: Buffer): void {
    let line = bytes.toString('utf8');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') return;
    this.#writeLog(formatLogLine('notice', `[unit] #${ex.stream}: php message: ${line}`, this.pid));
  }

  #recordEnd(type: number, content: Buffer | null): void {
    if (type === END_REQUEST) {
      const ex = this.#exchange;
      if (!ex) return;
      const protocolStatus = content && content.length >= 5 ? content[4] : REQUEST_COMPLETE;
      if (protocolStatus !== REQUEST_COMPLETE) {
        this.#broken(ex);
        return;
      }
      this.#complete(ex);
    }
    // STDOUT/STDERR stream ends (empty records) and anything else need no action.
  }

  /** END_REQUEST: finish the client response. */
  #complete(ex: Exchange): void {
    this.#flushStderr(ex);
    const res = ex.r.res;
    if (!ex.discard) {
      if (!ex.headerDone) {
        if (ex.headLength === 0) {
          // No output at all: Unit's default response.
          if (!res.headersSent) {
            res.setHeader('Content-Type', 'text/plain');
            res.writeHead(200);
          }
        } else {
          this.#malformed(ex);
          this.#end(ex, true);
          return;
        }
      }
      res.end();
    }
    this.#end(ex, true);
  }

  /** Malformed response: 503 before anything was sent; stop forwarding output. */
  #malformed(ex: Exchange): void {
    ex.discard = true;
    failExchange(ex, 503);
  }

  #abandon(ex: Exchange): void {
    if (this.#exchange !== ex || ex.discard) return;
    ex.discard = true;
    const res = ex.r.res;
    if (res.headersSent) res.destroy();
    else failExchange(ex, 503);
    this.#socket?.resume();
  }

  /**
   * The connection broke with `ex` in flight: 503 when nothing was sent, else
   * the client connection is closed. `ours` marks a close we chose (client
   * left mid-body): the process lives on and a new connection may follow.
   */
  #broken(ex: Exchange, ours = false): void {
    if (this.#exchange !== ex) return;
    this.#flushStderr(ex);
    const res = ex.r.res;
    if (!ex.discard) {
      ex.discard = true;
      if (res.headersSent) res.destroy();
      else failExchange(ex, 503);
    }
    const s = this.#socket;
    this.#socket = null;
    s?.destroy();
    this.#end(ex, false, ours);
  }

  #end(ex: Exchange, ok: boolean, reconnectable = ok): void {
    ex.cleanup();
    this.#exchange = null;
    this.#awaitingDrain = false;
    const exhausted = this.maxRequests > 0 && this.#started >= this.maxRequests;
    if (!reconnectable || exhausted || this.#closing) this.#finish(ok ? 'end' : 'destroy', false);
    ex.hooks.onDone(ok);
    if (this.#closed) this.#notifyClosed();
  }

  /** Mark closed for good and end our side of the socket ('end' after pending writes, or 'destroy'). */
  #finish(how: 'end' | 'destroy' | 'none', notify = true): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#socket;
    this.#socket = null;
    if (s && how === 'end') s.end();
    else if (s && how === 'destroy') s.destroy();
    // The socket is ours no more: its close event must not count as a loss.
    if (notify) this.#notifyClosed();
  }

  #notifyClosed(): void {
    const listeners = this.#closeListeners;
    this.#closeListeners = [];
    for (const fn of listeners) fn();
  }
}

/**
 * One FCGI_GET_VALUES round trip on a fresh connection to `path`.
 * @throws Error with a log-ready message when it cannot connect or gets no answer.
 */
export function probe(path: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    let answered = false;
    const values: Record<string, string> = {};
    const reader = new RecordReader(() => {}, (type, content) => {
      if (type !== GET_VALUES_RESULT) return;
      answered = true;
      if (content) Object.assign(values, decodeNameValues(content));
      s.end();
      resolve(values);
    });
    s.on('connect', () => {
      s.write(encodeNameValues(GET_VALUES, ['FCGI_MAX_CONNS', '', 'FCGI_MAX_REQS', '', 'FCGI_MPXS_CONNS', ''], false));
    });
    s.on('data', (chunk: Buffer) => {
      try { reader.push(chunk); } catch (e) { s.destroy(e as Error); }
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) reject(new Error(`connect(unix:${path}) failed (${err.code ?? err.message})`));
    });
    s.on('close', () => {
      if (!answered) reject(new Error(`FastCGI process on unix:${path} closed the connection before answering`));
    });
  });
}

/** Decode FastCGI name-value pairs (GET_VALUES_RESULT content). */
export function decodeNameValues(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let o = 0;
  const len = () => {
    if (buf[o] < 128) return buf[o++];
    const n = buf.readUInt32BE(o) & 0x7fffffff;
    o += 4;
    return n;
  };
  while (o < buf.length) {
    const nl = len();
    const vl = len();
    const name = buf.toString('latin1', o, o + nl);
    o += nl;
    out[name] = buf.toString('latin1', o, o + vl);
    o += vl;
  }
  return out;
}
