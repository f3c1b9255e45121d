/**
 * FastCGI client for application processes that serve FastCGI on their
 * listening socket (the `php` type: Debian's `php-cgi`).
 *
 * One FastCgiConnection per application process. It keeps one connection to
 * the process open across requests (FCGI_KEEP_CONN) and runs one request at a
 * time on it (request id 1; php-cgi neither multiplexes nor takes a second
 * connection while busy). With `pipeline` = N, it takes up to N more
 * requests while one runs and writes them at once: php-cgi reads the next one
 * when it is done, without going to sleep in between — on a busy machine the
 * process switches per request drop to about 1/(N + 1) of what they were.
 * (php-cgi blocked in read() on its kept connection is also woken each time
 * the router reads its output, by the socket's write-space wakeup; a waiting
 * request spares that too.) Bodies are streamed both ways with back-pressure.
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
 * Cost per request, on the hot path: the request's records are encoded into a
 * reused scratch buffer and leave in one socket write (bodies in one more
 * write per chunk, header and data together); the requests started while a
 * batch of responses is handled leave together after it (the socket is
 * corked until the next tick), so the process is woken once for the batch;
 * the response header is parsed from the bytes as they arrive and written
 * with the first body bytes; no listener or closure is added per request.
 *
 * Protocol: FastCGI Specification 1.0 (Open Market, 1996), Responder role.
 * Written here rather than taken from npm: the published clients open and
 * pool connections themselves, which here is the process pool's job.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { AppRequest } from '../types.ts';
import { formatLogLine } from '../../runtime/log.ts';
import { endShort } from '../exchange.ts';

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

/**
 * The records of one request up to its body, as ParamsEncoder.finish() makes
 * them: FCGI_BEGIN_REQUEST and the whole FCGI_PARAMS stream, followed by the
 * end of an empty FCGI_STDIN when `complete` (a request without a body).
 */
export interface RequestHead {
  bytes: Buffer;
  complete: boolean;
}

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
  /**
   * How many requests may wait behind the running one: they are sent at once
   * (when they have no body to stream), so that the process finds the next
   * one waiting when it is done (see FastCgiConnection.accepting). Default 0.
   */
  pipeline?: number;
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
  /**
   * A request taken while another ran (pipelined) never started: the
   * connection broke first. Give it back to be run elsewhere; return false
   * when that is not possible (it is then failed with 503 and done).
   */
  retry?(): boolean;
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

function recordHeader(type: number, id: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeRecordHeader(b, 0, type, id, length);
  return b;
}

function writeRecordHeader(b: Buffer, at: number, type: number, id: number, length: number): void {
  b[at] = VERSION_1;
  b[at + 1] = type;
  b[at + 2] = id >> 8;
  b[at + 3] = id & 0xff;
  b[at + 4] = length >> 8;
  b[at + 5] = length & 0xff;
  b[at + 6] = 0; // padding
  b[at + 7] = 0;
}

/** Bytes of one name-value pair (FastCGI §3.4) with byte strings of these lengths. */
function pairSize(nameLength: number, valueLength: number): number {
  return (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength;
}

function writeLength(b: Buffer, at: number, n: number): number {
  if (n < 128) {
    b[at] = n;
    return at + 1;
  }
  b.writeUInt32BE((n | 0x80000000) >>> 0, at);
  return at + 4;
}

/**
 * Name-value pairs (FastCGI §3.4) without record headers, for blocks of
 * parameters that are the same for every request (ParamsEncoder.block()).
 * @throws RangeError when the pairs need more than 65535 bytes.
 */
export function encodePairs(pairs: string[]): Buffer {
  let size = 0;
  for (let i = 0; i < pairs.length; i += 2) size += pairSize(pairs[i].length, (pairs[i + 1] ?? '').length);
  if (size > MAX_CONTENT) throw new RangeError(`FastCGI parameters too large (${size} bytes)`);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i];
    const value = pairs[i + 1] ?? '';
    o = writeLength(out, o, name.length);
    o = writeLength(out, o, value.length);
    o += out.write(name, o, 'latin1');
    o += out.write(value, o, 'latin1');
  }
  return out;
}

/**
 * Builds the records of one request (FCGI_BEGIN_REQUEST, FCGI_PARAMS) in a
 * scratch buffer kept across requests, then copies them out in one piece:
 *
 *   enc.start().pair('REQUEST_METHOD', 'GET').block(constant)…; head = enc.finish(noBody)
 *
 * Every pair stays within one record: php-cgi decodes each record on its
 * own. Names and values are byte strings (one char per byte). One encoder is
 * used by one request at a time (the calls are synchronous).
 */
export class ParamsEncoder {
  #buf = Buffer.allocUnsafeSlow(16 * 1024);
  #o = 0;
  /** Offset of the header of the PARAMS record being filled. */
  #record = 0;

  /** Begin a request: FCGI_BEGIN_REQUEST (responder, keep-conn) and an open PARAMS record. */
  start(): this {
    BEGIN.copy(this.#buf, 0);
    this.#record = BEGIN.length;
    this.#o = this.#record + 8;
    return this;
  }

  /**
   * Add one pair.
   * @throws RangeError when it needs more than 65535 bytes (Unit answers 500).
   */
  pair(name: string, value: string): this {
    const size = pairSize(name.length, value.length);
    if (size > MAX_CONTENT) throw new RangeError(`FastCGI parameter ${name} too large (${size} bytes)`);
    this.#room(size);
    const b = this.#buf;
    let o = writeLength(b, this.#o, name.length);
    o = writeLength(b, o, value.length);
    o += b.write(name, o, 'latin1');
    o += b.write(value, o, 'latin1');
    this.#o = o;
    return this;
  }

  /** Add pairs encoded beforehand with encodePairs(). */
  block(pairs: Buffer): this {
    this.#room(pairs.length);
    pairs.copy(this.#buf, this.#o);
    this.#o += pairs.length;
    return this;
  }

  /**
   * Close the PARAMS stream (and, with `noBody`, the empty STDIN stream) and
   * return a copy of the request's records.
   */
  finish(noBody: boolean): RequestHead {
    this.#room(0);
    this.#closeRecord();
    const end = this.#o + (noBody ? 16 : 8);
    this.#grow(end);
    writeRecordHeader(this.#buf, this.#o, PARAMS, REQUEST_ID, 0);
    if (noBody) writeRecordHeader(this.#buf, this.#o + 8, STDIN, REQUEST_ID, 0);
    const bytes = Buffer.allocUnsafe(end);
    this.#buf.copy(bytes, 0, 0, end);
    return { bytes, complete: noBody };
  }

  /** Make room for `size` more bytes in the current record, starting a new record when it would overflow. */
  #room(size: number): void {
    if (this.#o - this.#record - 8 + size > MAX_CONTENT) {
      this.#closeRecord();
      this.#record = this.#o;
      this.#o += 8;
    }
    this.#grow(this.#o + size + 24);
  }

  /** Write the header of the current record (an empty one is dropped). */
  #closeRecord(): void {
    const length = this.#o - this.#record - 8;
    if (length === 0) {
      this.#o = this.#record;
      return;
    }
    writeRecordHeader(this.#buf, this.#record, PARAMS, REQUEST_ID, length);
  }

  #grow(need: number): void {
    if (need <= this.#buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(need, this.#buf.length * 2));
    this.#buf.copy(bigger, 0, 0, this.#o);
    this.#buf = bigger;
  }
}

/** The encoder behind FastCgiConnection.request() with a pair list. */
const listEncoder = new ParamsEncoder();

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
  const parts: Buffer[] = [];
  let record: string[] = [];
  let size = 0;
  const flush = () => {
    if (record.length === 0) return;
    const content = encodePairs(record);
    parts.push(recordHeader(type, id, content.length), content);
    record = [];
    size = 0;
  };
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i];
    const value = pairs[i + 1] ?? '';
    const need = pairSize(name.length, value.length);
    if (need > MAX_CONTENT) throw new RangeError(`FastCGI parameter ${name} too large (${need} bytes)`);
    if (size + need > MAX_CONTENT) flush();
    record.push(name, value);
    size += need;
  }
  flush();
  if (terminate) parts.push(recordHeader(type, id, 0));
  return Buffer.concat(parts);
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
    const n = chunk.length;
    while (o < n) {
      if (this.#remaining === 0 && this.#padding === 0 && this.#headLen < 8) {
        let h: Buffer;
        let at: number;
        if (this.#headLen === 0 && n - o >= 8) {
          // The usual case: a whole header in the chunk, read in place.
          h = chunk;
          at = o;
          o += 8;
        } else {
          const take = Math.min(8 - this.#headLen, n - o);
          chunk.copy(this.#head, this.#headLen, o, o + take);
          this.#headLen += take;
          o += take;
          if (this.#headLen < 8) return;
          h = this.#head;
          at = 0;
        }
        if (h[at] !== VERSION_1) throw new Error(`FastCGI: bad record version ${h[at]}`);
        this.#headLen = 8;
        this.#type = h[at + 1];
        this.#remaining = (h[at + 4] << 8) | h[at + 5];
        this.#padding = h[at + 6];
        if (this.#remaining === 0) this.#endRecord();
        continue;
      }
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, n - o);
        const piece = take === n && o === 0 ? chunk : chunk.subarray(o, o + take);
        o += take;
        this.#remaining -= take;
        if (this.#type === STDOUT || this.#type === STDERR) this.onContent(this.#type, piece);
        else this.#small.push(piece);
        if (this.#remaining === 0) this.#endRecord();
        continue;
      }
      const take = Math.min(this.#padding, n - o);
      o += take;
      this.#padding -= take;
      if (this.#padding === 0) this.#headLen = 0;
    }
  }

  #endRecord(): void {
    const small = this.#small;
    const content = small.length === 0 ? null : small.length === 1 ? small[0] : Buffer.concat(small);
    if (small.length) this.#small = [];
    if (this.#padding === 0) this.#headLen = 0;
    this.onRecordEnd(this.#type, content);
  }
}

/** Parsed CGI response header. */
interface CgiHead { status: number; fields: string[] }

/**
 * RFC 9110 token characters (field names), indexed by byte; and the bytes a
 * field value may hold (HTAB, SP to `~`, obs-text), as Node accepts them.
 */
const TCHAR = new Uint8Array(256);
const VCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  TCHAR[c] = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(String.fromCharCode(c)) ? 1 : 0;
  VCHAR[c] = c === 9 || (c >= 0x20 && c !== 0x7f) ? 1 : 0;
}

/**
 * Parse the CGI header block (RFC 3875 §6.2) in `buf[0, end)`, lines ending
 * in LF or CRLF, without the blank line.
 * @returns null when a line has no colon, a name is not a token, a value
 *   holds control characters, or `Status` is not a 3-digit code.
 */
function parseHead(buf: Buffer, end: number): CgiHead | null {
  const fields: string[] = [];
  let status = 0;
  let location = false;
  let line = 0;
  while (line < end) {
    let eol = buf.indexOf(10, line);
    if (eol < 0 || eol > end) eol = end;
    let stop = eol;
    if (stop > line && buf[stop - 1] === 13) stop--;
    if (stop > line) {
      let colon = line;
      while (colon < stop && buf[colon] !== 58) colon++;
      if (colon === line || colon === stop) return null;
      let nameEnd = colon;
      while (nameEnd > line && (buf[nameEnd - 1] === 32 || buf[nameEnd - 1] === 9)) nameEnd--;
      let nameStart = line;
      while (nameStart < nameEnd && (buf[nameStart] === 32 || buf[nameStart] === 9)) nameStart++;
      if (nameStart === nameEnd) return null;
      for (let i = nameStart; i < nameEnd; i++) if (TCHAR[buf[i]] === 0) return null;
      let v = colon + 1;
      while (v < stop && (buf[v] === 32 || buf[v] === 9)) v++;
      let vEnd = stop;
      while (vEnd > v && (buf[vEnd - 1] === 32 || buf[vEnd - 1] === 9)) vEnd--;
      for (let i = v; i < vEnd; i++) if (VCHAR[buf[i]] === 0) return null;
      const n = nameEnd - nameStart;
      if (n === 6 && (buf[nameStart] | 0x20) === 0x73 && buf.toString('latin1', nameStart, nameEnd).toLowerCase() === 'status') {
        // Status: three digits, then the end or white space (the reason is the router's).
        if (vEnd - v < 3 || (vEnd - v > 3 && buf[v + 3] !== 32 && buf[v + 3] !== 9)) return null;
        let code = 0;
        for (let i = v; i < v + 3; i++) {
          const d = buf[i] - 48;
          if (d < 0 || d > 9) return null;
          code = code * 10 + d;
        }
        status = code;
      } else {
        const name = buf.toString('latin1', nameStart, nameEnd);
        if (n === 8 && !location && name.toLowerCase() === 'location') location = true;
        fields.push(name, buf.toString('latin1', v, vEnd));
      }
    }
    line = eol + 1;
  }
  return { status: status || (location ? 302 : 200), fields };
}

/**
 * Parse a CGI response header block (RFC 3875 §6.2, without the blank line).
 * @returns null when a line has no colon, a field is not valid HTTP, or
 *   `Status` is not a 3-digit code.
 */
export function parseCgiHeader(text: string): CgiHead | null {
  const buf = Buffer.from(text, 'latin1');
  return parseHead(buf, buf.length);
}

/**
 * Find the end of the CGI header (`\r\n\r\n` or `\n\n`) in `buf`:
 * [offset of the body, end of the header text], or null when it is not complete.
 */
function headerEnd(buf: Buffer): [number, number] | null {
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return [i + 2, i];
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return [i + 3, i];
  }
  return null;
}

/** State of the request in flight. */
class Exchange implements FastCgiExchange {
  readonly conn: FastCgiConnection;
  readonly r: AppRequest;
  readonly hooks: FastCgiHooks;
  readonly stream: number;
  /** STDOUT bytes before the header was complete. */
  head: Buffer | null = null;
  headLength = 0;
  /** The Content-Length the script announced (-1: none, or a response without a body). */
  declared = -1;
  /** Body bytes written to the client. */
  written = 0;
  headerDone = false;
  /** Output is no longer forwarded (client gone, timed out, or response failed). */
  discard = false;
  /** Request body fully sent (empty STDIN written). */
  inputDone = false;
  /** Partial FCGI_STDERR line. */
  stderr: Buffer | null = null;
  /** Removes the request body listeners, when the body is streamed. */
  cleanup: (() => void) | null = null;
  /** A request taken while another ran: its records, until they are written (then null). */
  pending: { head: RequestHead; body: Buffer | undefined } | null = null;

  constructor(conn: FastCgiConnection, r: AppRequest, hooks: FastCgiHooks) {
    this.conn = conn;
    this.r = r;
    this.hooks = hooks;
    this.stream = ++streamSeq;
  }

  abandon(): void {
    this.conn.abandonExchange(this);
  }

  fail(status: number): void {
    if (this.hooks.fail) this.hooks.fail(status);
    else this.r.fail(status);
  }
}

/** The handle of a request that never reached the process. */
const NOT_STARTED: FastCgiExchange = { abandon() {} };

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
  /** The requests taken while #exchange runs (pipelined), in order. */
  #waiting: Exchange[] = [];
  readonly #pipeline: number;
  /** performance.now() when the process got the request it runs. */
  #since = 0;
  #started = 0;
  #closed = false;
  #closing = false;
  #closeListeners: Array<() => void> = [];
  #reader: RecordReader;
  /** The socket is paused until the client response drains (or the client goes). */
  #awaitingDrain = false;
  #drainRes: AppRequest['res'] | null = null;
  readonly #onContent = (type: number, data: Buffer): void => this.#content(type, data);
  readonly #onRecordEnd = (type: number, content: Buffer | null): void => this.#recordEnd(type, content);

  constructor(path: string, options: FastCgiOptions = {}) {
    this.path = path;
    this.pid = options.pid ?? process.pid;
    this.maxRequests = options.maxRequests ?? 0;
    this.#pipeline = options.pipeline ?? 0;
    this.#writeLog = options.writeLog ?? ((line) => { process.stderr.write(line); });
    this.#reader = new RecordReader(this.#onContent, this.#onRecordEnd);
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

  /**
   * True while request() takes a request: when `available`, and with
   * `pipeline` also while one request runs and fewer than `pipeline` wait —
   * unless that would exceed `maxRequests`. A waiting request's records are
   * written at once when it has no body to stream and the records of every
   * request before it went out whole, else when its turn comes.
   */
  get accepting(): boolean {
    if (this.#closed || this.#closing) return false;
    if (this.#exchange === null) return true;
    return this.#waiting.length < this.#pipeline && (this.maxRequests === 0 || this.#started < this.maxRequests);
  }

  /** Milliseconds since the process got the request it runs; 0 when it runs none. */
  get runningFor(): number {
    return this.#exchange === null ? 0 : performance.now() - this.#since;
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
   * Run one request: send FCGI_BEGIN_REQUEST (keep-conn), the parameters, the
   * body of `r.req` as FCGI_STDIN (streamed; or `body` when given, already
   * read), and write the response to `r.res`.
   * @param params a pair list, or the records ParamsEncoder.finish() made; it
   *   must carry CONTENT_LENGTH for any body (php-cgi reads exactly that many
   *   bytes). A `complete` head takes no body.
   * @throws Error when the connection is not `accepting`.
   */
  request(r: AppRequest, params: FastCgiParams | RequestHead, hooks: FastCgiHooks, body?: Buffer): FastCgiExchange {
    if (!this.accepting) throw new Error(this.#closed ? 'FastCGI connection closed' : 'FastCGI connection busy');
    this.#started++;
    const ex = new Exchange(this, r, hooks);
    const second = this.#exchange !== null;
    if (second) {
      this.#waiting.push(ex);
    } else {
      this.#exchange = ex;
      this.#since = performance.now();
    }
    let head: RequestHead;
    if (Array.isArray(params)) {
      try {
        const enc = listEncoder.start();
        for (let i = 0; i < params.length; i += 2) enc.pair(params[i], params[i + 1] ?? '');
        head = enc.finish(body !== undefined && body.length === 0);
      } catch {
        // Fields too large for the transport (Unit: 500); the connection is untouched.
        this.#started--;
        ex.discard = true;
        ex.fail(500);
        if (second) {
          this.#waiting.pop();
          queueMicrotask(() => hooks.onDone(true));
        } else {
          queueMicrotask(() => this.#end(ex, true));
        }
        return NOT_STARTED;
      }
    } else {
      head = params;
    }
    if (second) {
      // Written now only behind requests whose records all went out already.
      const w = this.#waiting;
      const before = w.length > 1 ? w[w.length - 2] : this.#exchange!;
      if (this.#socket && before.inputDone && before.pending === null && (head.complete || body !== undefined)) {
        this.#start(ex, this.#socket, head, body);
      } else {
        ex.pending = { head, body };
      }
      return ex;
    }
    const socket = this.#socket;
    if (socket) this.#start(ex, socket, head, body);
    else {
      this.#connect().then(
        (s) => { if (this.#exchange === ex) this.#start(ex, s, head, body); },
        () => { if (this.#exchange === ex) this.#broken(ex); },
      );
    }
    return ex;
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
    this.#reader = new RecordReader(this.#onContent, this.#onRecordEnd);
    s.on('data', (chunk: Buffer) => {
      // What the responses lead to (the next requests, pipelined ones) leaves in
      // one write once they are all handled: the process is woken once for all.
      s.cork();
      process.nextTick(uncork, s);
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

  #start(ex: Exchange, socket: net.Socket, head: RequestHead, body: Buffer | undefined): void {
    ex.pending = null;
    const req = ex.r.req;
    if (head.complete || (body !== undefined && body.length === 0)) {
      // No body: the whole request in one write.
      socket.write(head.complete ? head.bytes : Buffer.concat([head.bytes, EMPTY_STDIN]));
      ex.inputDone = true;
      return;
    }
    if (body !== undefined) {
      socket.cork();
      socket.write(head.bytes);
      for (const part of stdinRecords(body)) socket.write(part);
      socket.write(EMPTY_STDIN);
      socket.uncork();
      ex.inputDone = true;
      return;
    }
    if (req.destroyed) {
      // The client left before its body could be read: nothing was sent, nothing to run.
      this.#started--;
      ex.discard = true;
      queueMicrotask(() => this.#end(ex, true));
      return;
    }
    if (req.complete && req.readableLength === 0 && req.readableEnded) {
      socket.write(Buffer.concat([head.bytes, EMPTY_STDIN]));
      ex.inputDone = true;
      return;
    }
    // The head and the body chunks already buffered leave together (uncorked
    // after the stream has emitted them, on the tick resume() schedules).
    socket.cork();
    socket.write(head.bytes);
    const onData = (chunk: Buffer) => {
      if (this.#exchange !== ex) return;
      let ok = true;
      socket.cork();
      for (const part of stdinRecords(chunk)) ok = socket.write(part) && ok;
      if (req.complete && req.readableLength === 0) {
        // The last chunk: the end of STDIN goes with it.
        ex.inputDone = true;
        ok = socket.write(EMPTY_STDIN) && ok;
      }
      socket.uncork();
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
    ex.cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
    };
    req.resume();
    process.nextTick(uncork, socket);
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
      let all = data;
      if (ex.head !== null) {
        all = Buffer.concat([ex.head, data]);
        ex.head = null;
      }
      ex.headLength += data.length;
      const end = headerEnd(all);
      if (end === null) {
        if (ex.headLength > MAX_RESPONSE_HEADER) this.#malformed(ex);
        // Keep a copy: the socket's chunk may be reused.
        else ex.head = all === data ? Buffer.from(data) : all;
        return;
      }
      if (!this.#sendHead(ex, all, end[1])) return;
      if (end[0] < all.length) this.#write(ex, all.subarray(end[0]));
      return;
    }
    this.#write(ex, data);
  }

  /** Write the parsed header in `buf[0, end)` to the client. @returns false when it was malformed (503 sent). */
  #sendHead(ex: Exchange, buf: Buffer, end: number): boolean {
    const head = parseHead(buf, end);
    if (head === null) {
      this.#malformed(ex);
      return false;
    }
    const res = ex.r.res;
    ex.headerDone = true;
    if (res.headersSent || res.writableEnded || res.destroyed) {
      ex.discard = true;
      return true;
    }
    try {
      const f = head.fields;
      if (ex.r.req.method !== 'HEAD' && head.status !== 204 && head.status !== 304) {
        for (let i = 0; i < f.length; i += 2) {
          if (f[i].length === 14 && f[i].toLowerCase() === 'content-length' && /^\d{1,15}$/.test(f[i + 1])) ex.declared = Number(f[i + 1]);
        }
      }
      if (res.getHeaderNames().length === 0) {
        res.writeHead(head.status, f);
      } else {
        // Fields set before (none in the router): the application's replace them.
        const seen = new Set<string>();
        for (let i = 0; i < f.length; i += 2) {
          const lower = f[i].toLowerCase();
          if (!seen.has(lower)) { seen.add(lower); res.removeHeader(f[i]); }
          res.appendHeader(f[i], f[i + 1]);
        }
        res.writeHead(head.status);
      }
    } catch {
      // Node refused the status or a field: malformed response.
      ex.headerDone = false;
      this.#malformed(ex);
      return false;
    }
    return true;
  }

  #write(ex: Exchange, data: Buffer): void {
    if (ex.discard || data.length === 0) return;
    ex.written += data.length;
    const res = ex.r.res;
    if (res.destroyed) {
      // The client is gone: the rest of the output is read and dropped.
      ex.discard = true;
      return;
    }
    if (!res.write(data) && !this.#awaitingDrain && this.#socket) {
      // Back-pressure: read no more from the process until the client has taken this.
      this.#awaitingDrain = true;
      this.#drainRes = res;
      this.#socket.pause();
      res.once('drain', this.#onDrain);
      res.once('close', this.#onDrain);
    }
  }

  /** The client response drained or closed (or the exchange ended first): read from the process again. */
  #onDrain = (): void => {
    if (!this.#awaitingDrain) return;
    this.#awaitingDrain = false;
    const res = this.#drainRes!;
    this.#drainRes = null;
    res.off('drain', this.#onDrain);
    res.off('close', this.#onDrain);
    this.#socket?.resume();
  };

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
    if (ex.stderr) this.#flushStderr(ex);
    const res = ex.r.res;
    if (!ex.discard) {
      if (!ex.headerDone) {
        if (ex.headLength === 0) {
          // No output at all: Unit's default response.
          if (!res.headersSent) res.writeHead(200, ['Content-Type', 'text/plain']);
        } else {
          this.#malformed(ex);
          this.#end(ex, true);
          return;
        }
      }
      if (ex.written < ex.declared) endShort(res);
      else res.end();
    }
    this.#end(ex, true);
  }

  /** Malformed response: 503 before anything was sent; stop forwarding output. */
  #malformed(ex: Exchange): void {
    ex.discard = true;
    ex.head = null;
    ex.fail(503);
  }

  /** @internal FastCgiExchange.abandon() of the request in flight. */
  abandonExchange(ex: Exchange): void {
    if ((this.#exchange !== ex && !this.#waiting.includes(ex)) || ex.discard) return;
    ex.discard = true;
    const res = ex.r.res;
    if (res.headersSent) res.destroy();
    else ex.fail(503);
    if (this.#exchange === ex) this.#onDrain();
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
      else ex.fail(503);
    }
    const s = this.#socket;
    this.#socket = null;
    s?.destroy();
    this.#end(ex, false, ours);
  }

  #end(ex: Exchange, ok: boolean, reconnectable = ok): void {
    if (ex.cleanup) ex.cleanup();
    this.#exchange = null;
    // A client that never drains (gone) must not leave the connection paused for the next request.
    if (this.#awaitingDrain) this.#onDrain();
    let orphans: Exchange[] = [];
    if (this.#waiting.length) {
      if (ok && this.#socket !== null) {
        // The next request is the process's now; its `limits.timeout` starts over.
        const next = this.#waiting.shift()!;
        this.#exchange = next;
        this.#since = performance.now();
        next.hooks.onActivity?.();
        if (next.pending !== null) {
          const { head, body } = next.pending;
          this.#start(next, this.#socket, head, body);
        }
      } else {
        orphans = this.#waiting;
        this.#waiting = [];
      }
    }
    const exhausted = this.maxRequests > 0 && this.#started >= this.maxRequests;
    if (this.#exchange === null && (!reconnectable || exhausted || this.#closing)) this.#finish(ok ? 'end' : 'destroy', false);
    // A process that is gone: its owner learns it before it looks for work for it.
    if (this.#closed && !ok) this.#notifyClosed();
    ex.hooks.onDone(ok);
    if (this.#closed) this.#notifyClosed();
    for (const w of orphans) {
      // The connection broke before the process got to it: it may run elsewhere.
      this.#started--;
      if (w.discard) {
        w.hooks.onDone(false);
      } else if (!w.hooks.retry?.()) {
        w.fail(503);
        w.hooks.onDone(false);
      }
    }
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

function uncork(socket: net.Socket): void {
  socket.uncork();
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
