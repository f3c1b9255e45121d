/**
 * The response object every route writes through: a node:http ServerResponse
 * whose header block is serialised the way Unit does it (spec/router.md §2.8):
 *
 *   status line (Unit's reasons, any code 0–999)
 *   action / app / upstream fields (Server, Connection, Transfer-Encoding dropped)
 *   + `response_headers` of the current action (200–399 only, §4.6)
 *   Server, Date (unless supplied), Content-Length (when known),
 *   Connection (close for 1.1 / keep-alive for 1.0, only when not the default),
 *   Transfer-Encoding: chunked (1.1, unknown length, a body follows).
 *
 * Node builds its header in the private `_storeHeader`; we replace that one
 * method and set the same state Node's version sets (`_header`, `_last`,
 * `chunkedEncoding`, `shouldKeepAlive`). Body writing, pipelining order and
 * back-pressure stay Node's.
 */
import { ServerResponse, OutgoingMessage, type IncomingMessage } from 'node:http';
import { statusLine, errorPageBody, ERROR_PAGE_TYPE } from './errors.ts';
import type { Request } from './request.ts';

/** Node's private state this class reads or sets. */
interface NodeOutgoing {
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

let dateSecond = -1;
let dateText = '';

/** Current time as an RFC 1123 `Date` value, recomputed at most once a second. */
export function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(s * 1000).toUTCString();
  }
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

/**
 * ServerResponse with Unit's header block. The router sets `request` right
 * after Node creates the object.
 */
export class UnitResponse extends ServerResponse {
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

  constructor(req: IncomingMessage) {
    super(req);
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

  /** @internal Node's hook: build the header block (see module comment). */
  _storeHeader(_firstLine: string, headers: unknown): void {
    const self = this as unknown as NodeOutgoing;
    const r = this.request;
    const status = this.forcedStatus >= 0 ? this.forcedStatus : this.statusCode;
    this.status = status;

    // Collect the fields in the order given, without the ones Unit drops.
    const f: string[] = [];
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

    const action = r?.current;
    if (action?.responseHeaders && !this.isErrorPage && status >= 200 && status <= 399) {
      action.responseHeaders.apply(r!, f);
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
