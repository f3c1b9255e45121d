/**
 * The response object every route writes through: a node:http ServerResponse
 * whose header block is serialised the way Unit does it (spec/router.md §2.8):
 *
 *   status line (Unit's reasons, any code 0–999)
 *   action / app / upstream fields (Server, Connection, Transfer-Encoding dropped)
 *   + Content-Encoding / Vary of compression (application responses, §11)
 *   + `response_headers` of the current action (200–399 only, §4.6)
 *   Server, Date (unless supplied), Content-Length (when known),
 *   Connection (close for 1.1 / keep-alive for 1.0, only when not the default),
 *   Transfer-Encoding: chunked (1.1, unknown length, a body follows).
 *
 * Node builds its header in the private `_storeHeader`; we replace that one
 * method and set the same state Node's version sets (`_header`, `_last`,
 * `chunkedEncoding`, `shouldKeepAlive`). Body writing, pipelining order and
 * back-pressure stay Node's; only when the header decides to compress the
 * body, or to replace it with the 500 page (a JS `response_headers` value
 * failed), do writes go through a BodyFilter first.
 */
import { ServerResponse, OutgoingMessage, type IncomingMessage } from 'node:http';
import type { Transform } from 'node:stream';
import { statusLine, errorPageBody, ERROR_PAGE_TYPE } from './errors.ts';
import type { Request } from './request.ts';
import { createEncoder } from './compression.ts';
import { JsError } from './js.ts';

/** Node's private state this class reads or sets. */
interface NodeOutgoing {
  _implicitHeader(): void;
  _header: string | null;
  _headerSent: boolean;
  _last: boolean;
  _hasBody: boolean;
  _contentLength: number | null;
  chunkedEncoding: boolean;
  shouldKeepAlive: boolean;
}

const kOutHeaders: symbol | undefined = Object.getOwnPropertySymbols(new OutgoingMessage())
  .find((s) => s.description === 'kOutHeaders');

let dateText: string | null = null;
let dateSecond = -1;

function dateExpired(): void {
  // Timers run on the loop's clock, which may lag the wall clock: not before the second is over.
  const now = Date.now();
  if (Math.floor(now / 1000) === dateSecond) setTimeout(dateExpired, 1000 - (now % 1000)).unref();
  else dateText = null;
}

/**
 * Current time as an RFC 1123 `Date` value. Computed once, then kept until
 * the next second begins (a timer drops it then; nothing runs while no
 * response is sent).
 */
export function httpDate(): string {
  if (dateText !== null) return dateText;
  const now = Date.now();
  dateSecond = Math.floor(now / 1000);
  dateText = new Date(dateSecond * 1000).toUTCString();
  setTimeout(dateExpired, 1000 - (now % 1000)).unref();
  return dateText;
}

const DROPPED = new Set(['server', 'connection', 'transfer-encoding']);

/** Serialises one header value the way Node does for arrays (one field per element). */
function pushField(out: string[], name: string, value: unknown): void {
  if (Array.isArray(value)) {
    for (const v of value) out.push(name, String(v));
  } else {
    out.push(name, String(value));
  }
}

type WriteCallback = (error?: Error | null) => void;

/**
 * Where the body goes when the router changes it after the header was
 * decided: compressed (§11), or replaced by an error page (a JS template in
 * `response_headers` failed).
 */
interface BodyFilter {
  write(chunk: unknown, encoding: BufferEncoding | undefined, cb: WriteCallback | undefined): boolean;
  end(chunk: unknown, encoding: BufferEncoding | undefined, cb: (() => void) | undefined): void;
}

/** Drops what the action writes and sends `body` at the end instead. */
class ReplaceFilter implements BodyFilter {
  private readonly res: UnitResponse;
  private readonly body: string;
  constructor(res: UnitResponse, body: string) { this.res = res; this.body = body; }
  write(_chunk: unknown, _encoding: BufferEncoding | undefined, cb: WriteCallback | undefined): boolean {
    if (cb) process.nextTick(cb);
    return true;
  }
  end(_chunk: unknown, _encoding: BufferEncoding | undefined, cb: (() => void) | undefined): void {
    this.res.rawEnd(this.body, cb);
  }
}

/** Passes the body through an encoder; its output goes out with the response's framing. */
class EncodeFilter implements BodyFilter {
  private readonly res: UnitResponse;
  private readonly enc: Transform;
  constructor(res: UnitResponse, enc: Transform) {
    this.res = res;
    this.enc = enc;
    enc.on('data', (d: Buffer) => {
      if (!res.rawWrite(d)) {
        enc.pause();
        res.once('drain', () => enc.resume());
      }
    });
    enc.on('drain', () => res.emit('drain'));
    enc.on('error', () => res.destroy());
    res.once('close', () => enc.destroy());
  }
  write(chunk: unknown, encoding: BufferEncoding | undefined, cb: WriteCallback | undefined): boolean {
    if (this.enc.destroyed) return false;
    return this.enc.write(chunk, encoding as BufferEncoding, cb);
  }
  end(chunk: unknown, encoding: BufferEncoding | undefined, cb: (() => void) | undefined): void {
    this.enc.once('end', () => this.res.rawEnd(undefined, cb));
    if (chunk !== undefined && chunk !== null) this.enc.end(chunk, encoding as BufferEncoding);
    else this.enc.end();
  }
}

/** Bytes of a `write`/`end` chunk. */
function chunkLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? encoding as BufferEncoding : 'utf8');
  return (chunk as Uint8Array).byteLength;
}

/**
 * ServerResponse with Unit's header block. The router sets `request` right
 * after Node creates the object.
 */
export class UnitResponse extends ServerResponse {
  /**
   * Called when a response with a request finishes (`completed`) and when it
   * closes: the end of the request (http.ts). Seen in emit() rather than
   * through listeners, which would be added for every request.
   */
  static onDone: (r: Request, completed: boolean) => void = () => {};
  /** The request this response answers (set by the router before any write). */
  request: Request | null = null;
  /** Status to put on the status line when Node's own range (100–999) cannot hold it; -1 = use statusCode. */
  forcedStatus = -1;
  /** Final status as sent (0–999), known once the header is built. */
  status = 0;
  /** The router's error page: `response_headers` are not applied. */
  isErrorPage = false;
  /** The header block as sent, as [name, value, …] (Server, Date, Content-Length included). */
  outFields: string[] | null = null;
  /** Length of the serialised header block, for `$body_bytes_sent`. */
  headerLength = 0;
  /** An application's response: compressed per `settings.http.compression` (§11). */
  compressible = false;
  /** Set when the body is compressed or replaced (see BodyFilter). */
  private filter: BodyFilter | null = null;
  /** end() reached the filter already (it ends the response when it has flushed). */
  private filterEnding = false;

  constructor(req: IncomingMessage) {
    super(req);
  }

  emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'finish' || event === 'close') {
      const r = this.request;
      if (r !== null) UnitResponse.onDone(r, event === 'finish');
    }
    return super.emit(event, ...args);
  }

  /** The body length when known before the header (Content-Length to be sent), else null. */
  knownLength(): number | null {
    const n = (this as unknown as NodeOutgoing)._contentLength;
    return typeof n === 'number' ? n : null;
  }

  /** Send a complete response without a body: `fields` as [name, value, …], `Content-Length: 0`. */
  sendEmpty(status: number, fields?: string[]): void {
    (this as unknown as NodeOutgoing)._contentLength = 0;
    this.forcedStatus = status;
    this.writeHead(status < 100 ? 200 : status, fields ?? []);
    this.end();
  }

  /**
   * Write the header of a response whose body the caller streams next;
   * `length` is its Content-Length (null: chunked or close-delimited).
   */
  writeStart(status: number, fields: string[], length: number | null): void {
    (this as unknown as NodeOutgoing)._contentLength = length;
    this.forcedStatus = status;
    this.writeHead(status < 100 ? 200 : status, fields);
  }

  /**
   * Send a header without a body: `length` is the Content-Length to announce
   * (HEAD of a file), or null for none (304).
   */
  sendHeaderOnly(status: number, fields: string[], length: number | null): void {
    (this as unknown as NodeOutgoing)._contentLength = length;
    if (length === null) (this as unknown as NodeOutgoing)._hasBody = false;
    this.forcedStatus = status;
    this.writeHead(status < 100 ? 200 : status, fields);
    this.end();
  }

  /**
   * Send the router's 54-byte error page for `status` (spec/router.md §2.9).
   * HEAD requests get the header only. When the header is already out, the
   * connection is closed instead.
   */
  sendError(status: number, fields?: string[]): void {
    if (this.headersSent || this.writableEnded) {
      this.destroy();
      return;
    }
    const body = errorPageBody(status);
    this.isErrorPage = true;
    (this as unknown as NodeOutgoing)._contentLength = body.length;
    this.forcedStatus = status;
    this.writeHead(status < 100 ? 200 : status,
      fields ? ['Content-Type', ERROR_PAGE_TYPE, ...fields] : ['Content-Type', ERROR_PAGE_TYPE]);
    this.end(body, 'latin1');
  }

  /** True when the header may install a body filter, so it must be decided before the first body byte. */
  private mayFilter(): boolean {
    const r = this.request;
    if (r === null) return false;
    return (this.compressible && r.table.settings.compression !== null) || r.current?.responseHeaders?.hasJs === true;
  }

  write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (this.filter === null) {
      if ((this as unknown as NodeOutgoing)._header !== null || this.headersSent || !this.mayFilter()) {
        return super.write(chunk, encoding as BufferEncoding, cb as WriteCallback);
      }
      (this as unknown as NodeOutgoing)._implicitHeader();
      if (this.filter === null) return super.write(chunk, encoding as BufferEncoding, cb as WriteCallback);
    }
    if (typeof encoding === 'function') { cb = encoding; encoding = undefined; }
    if (this.filterEnding) {
      if (typeof cb === 'function') process.nextTick(cb as WriteCallback, new Error('write after end'));
      return false;
    }
    return this.filter!.write(chunk, encoding as BufferEncoding | undefined, cb as WriteCallback | undefined);
  }

  end(chunk?: unknown, encoding?: unknown, cb?: unknown): this {
    if (typeof chunk === 'function') { cb = chunk; chunk = undefined; encoding = undefined; }
    if (typeof encoding === 'function') { cb = encoding; encoding = undefined; }
    const self = this as unknown as NodeOutgoing;
    if (this.filter === null && self._header === null && !this.headersSent && !this.writableEnded && this.mayFilter()) {
      // As Node does in end(): a body given here has a known length.
      self._contentLength = chunk !== undefined && chunk !== null ? chunkLength(chunk, encoding) : 0;
      self._implicitHeader();
    }
    if (this.filter === null || this.writableEnded) {
      return super.end(chunk as string, encoding as BufferEncoding, cb as () => void);
    }
    if (this.filterEnding) {
      if (typeof cb === 'function') this.once('finish', cb as () => void);
      return this;
    }
    this.filterEnding = true;
    this.filter.end(chunk, encoding as BufferEncoding | undefined, cb as (() => void) | undefined);
    return this;
  }

  /**
   * End the response with `text` (a latin1 string: one char per byte) as
   * the rest of its body. When the header has not gone out yet and the body
   * needs no framing or filter, both leave in one write.
   */
  endWith(text: string): void {
    const self = this as unknown as NodeOutgoing;
    if (self._header !== null && !self._headerSent && this.filter === null && !self.chunkedEncoding &&
      self._hasBody && !this.writableEnded) {
      self._header += text;
      this.end();
      return;
    }
    this.end(text, 'latin1');
  }

  /** @internal Write body bytes past the filter. */
  rawWrite(chunk: Buffer): boolean {
    return super.write(chunk);
  }

  /** @internal End the response past the filter. */
  rawEnd(chunk: string | undefined, cb: (() => void) | undefined): void {
    this.filter = null;
    if (chunk !== undefined) super.end(chunk, 'latin1', cb);
    else super.end(cb);
  }

  /**
   * Compression of an application's response (§11): when it applies, the
   * fields are changed in place (Content-Length out, Content-Encoding in) and
   * the body goes through an encoder. Returns true when it did.
   */
  private compress(r: Request, f: string[], status: number): boolean {
    const comp = r.table.settings.compression!;
    let type: string | undefined;
    let length = -1;
    let vary = -1;
    for (let i = 0; i < f.length; i += 2) {
      const lower = f[i].toLowerCase();
      // Already encoded, or a part of a representation: left as it is.
      if (lower === 'content-encoding' || lower === 'content-range') return false;
      if (lower === 'content-type' && type === undefined) type = f[i + 1];
      else if (lower === 'content-length' && length < 0) length = Number(f[i + 1]);
      else if (lower === 'vary' && vary < 0) vary = i;
    }
    const self = this as unknown as NodeOutgoing;
    if (length < 0 && typeof self._contentLength === 'number') length = self._contentLength;
    if (!(length > 0) || !comp.typeAllowed(type)) return false;
    if (vary < 0) f.push('Vary', 'Accept-Encoding');
    else if (!/(?:^|[\s,])(?:accept-encoding|\*)(?:$|[\s,])/i.test(f[vary + 1])) f[vary + 1] += ', Accept-Encoding';
    // Unit answers 503 when the client refuses identity too; the body is sent as it is here (RFC 9110 §12.5.3).
    const choice = comp.choose(r.header('accept-encoding'), length);
    if (choice.compressor === null) return false;
    for (let i = 0; i < f.length;) {
      if (f[i].toLowerCase() === 'content-length') f.splice(i, 2);
      else i += 2;
    }
    f.push('Content-Encoding', choice.compressor.encoding);
    self._contentLength = null;
    if (self._hasBody && status !== 204 && status !== 304) this.filter = new EncodeFilter(this, createEncoder(choice.compressor));
    return true;
  }

  /**
   * A JS template of `response_headers` failed (§6.3): the response becomes
   * the 500 error page, whatever the action goes on writing.
   */
  private replaceWithError(r: Request, e: unknown): string[] {
    const self = this as unknown as NodeOutgoing;
    r.conn.log.error(e instanceof JsError ? `js exception: ${e.message}` : `response_headers failed: ${(e as Error).message}`);
    r.jsFailed = true;
    r.forceClose = true;
    this.isErrorPage = true;
    const head = r.method === 'HEAD';
    const body = errorPageBody(500);
    self._contentLength = body.length;
    self._hasBody = !head;
    this.filter = new ReplaceFilter(this, head ? '' : body);
    return ['Content-Type', ERROR_PAGE_TYPE];
  }

  /** @internal Node's hook: build the header block (see module comment). */
  _storeHeader(_firstLine: string, headers: unknown): void {
    const self = this as unknown as NodeOutgoing;
    const r = this.request;
    let status = this.forcedStatus >= 0 ? this.forcedStatus : this.statusCode;
    this.status = status;

    // Collect the fields in the order given, without the ones Unit drops.
    let f: string[] = [];
    if (headers) {
      if (Array.isArray(headers)) {
        if (headers.length && Array.isArray(headers[0])) {
          for (const e of headers as unknown[][]) pushField(f, String(e[0]), e[1]);
        } else {
          for (let i = 0; i < headers.length; i += 2) pushField(f, String(headers[i]), headers[i + 1]);
        }
      } else if (kOutHeaders !== undefined && headers === (this as unknown as Record<symbol, unknown>)[kOutHeaders]) {
        const h = headers as Record<string, [string, unknown]>;
        for (const k in h) pushField(f, h[k][0], h[k][1]);
      } else {
        const h = headers as Record<string, unknown>;
        for (const k of Object.keys(h)) pushField(f, k, h[k]);
      }
    }
    let hasDate = false;
    let hasLength = false;
    for (let i = 0; i < f.length;) {
      const lower = f[i].toLowerCase();
      if (DROPPED.has(lower)) { f.splice(i, 2); continue; }
      if (lower === 'date') hasDate = true;
      else if (lower === 'content-length') hasLength = true;
      i += 2;
    }
    this.outFields = f;

    if (this.compressible && r !== null && r.table.settings.compression !== null && !this.isErrorPage &&
      this.compress(r, f, status)) {
      hasLength = false;
    }

    const action = r?.current;
    if (action?.responseHeaders && !this.isErrorPage && status >= 200 && status <= 399) {
      let failed: unknown = null;
      try {
        action.responseHeaders.apply(r!, f);
      } catch (e) {
        failed = e ?? new Error('exception');
      }
      if (failed !== null) {
        status = 500;
        this.status = 500;
        f = this.replaceWithError(r!, failed);
        this.outFields = f;
      }
      hasDate = false; hasLength = false;
      for (let i = 0; i < f.length; i += 2) {
        const lower = f[i].toLowerCase();
        if (lower === 'date') hasDate = true;
        else if (lower === 'content-length') hasLength = true;
      }
    }

    let h = statusLine(status);
    for (let i = 0; i < f.length; i += 2) h += f[i] + ': ' + f[i + 1] + '\r\n';
    const server = r ? r.table.settings.serverHeader : 'Unit';
    h += 'Server: ' + server + '\r\n';
    f.push('Server', server);
    if (!hasDate) {
      const d = httpDate();
      h += 'Date: ' + d + '\r\n';
      f.push('Date', d);
    }

    const http11 = r ? r.http11 : true;
    let keep = this.shouldKeepAlive && (r === null || (!r.forceClose && !r.conn.closing));
    let chunked = false;
    if (!hasLength) {
      if (typeof self._contentLength === 'number') {
        const n = String(self._contentLength);
        h += 'Content-Length: ' + n + '\r\n';
        f.push('Content-Length', n);
      } else if (!self._hasBody) {
        // HEAD, 1xx, 204, 304: no body follows, no framing needed.
      } else if (http11) {
        chunked = true;
      } else {
        keep = false;  // HTTP/1.0 with unknown length: the body ends with the connection.
      }
    }
    if (!keep && http11) h += 'Connection: close\r\n';
    else if (keep && !http11) h += 'Connection: keep-alive\r\n';
    if (chunked) h += 'Transfer-Encoding: chunked\r\n';
    if (status === 426) h += 'Sec-WebSocket-Version: 13\r\n';

    self._last = !keep;
    this.shouldKeepAlive = keep;
    self.chunkedEncoding = chunked;
    self._header = h + '\r\n';
    self._headerSent = false;
    this.headerLength = h.length + 2;
  }
}
