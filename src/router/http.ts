/**
 * From a parsed request to the action loop (spec/router.md §2): the checks
 * node:http's parser does not do the way Unit does them (target form and
 * normalisation, Host, field limits and unsafe names, Content-Length /
 * Transfer-Encoding rules), forwarded processing, dispatch, and the end of a
 * request (access log, counters, keep-alive). Parser errors reported by Node
 * are answered with Unit's error page.
 */
import { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Request } from './request.ts';
import { UnitResponse, httpDate } from './response.ts';
import { connectionOf, type Connection } from './connection.ts';
import { dispatch } from './action.ts';
import { splitTarget } from './uri.ts';
import { applyForwarded } from './forwarded.ts';
import { rawErrorResponse, STATUS_PLAIN_HTTP_ON_TLS } from './errors.ts';
import { readChunkedBody } from './body.ts';

/** Field-name chars Unit calls safe: A–Z a–z 0–9 and `-` (§2.4). */
const SAFE = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  SAFE[c] = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d ? 1 : 0;
}

function unsafeName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || SAFE[c] === 0) return true;
  }
  return false;
}

/** Normalised Host (§2.5): lowercase, no port, one trailing dot removed. */
export function normalizeHost(v: string): string {
  let h = v;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end >= 0) h = h.slice(0, end + 1);
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

/**
 * IncomingMessage that can enforce `max_body_size` on bodies without a
 * Content-Length (chunked), counting as Node's parser pushes data
 * (limitBody(); other requests pay nothing for it).
 */
export class UnitIncoming extends IncomingMessage {
  _unitRequest: Request | null = null;
  declare bodyLimit: number;
  declare bodyBytes: number;
  /** The body went over the limit: nothing more is delivered. */
  declare rejected: boolean;

  /** Count the body from now on and refuse it (413) beyond `limit` bytes. */
  limitBody(limit: number): void {
    this.bodyLimit = limit;
    this.bodyBytes = 0;
    this.rejected = false;
    this.push = this.limitedPush;
  }

  private limitedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (this.rejected) return false;
    if (chunk !== null && chunk !== undefined) {
      this.bodyBytes += (chunk as Buffer).length;
      if (this.bodyBytes > this.bodyLimit) {
        this.rejected = true;
        const r = this._unitRequest;
        if (r !== null) {
          r.forceClose = true;
          r.res.sendError(413);
        }
        this.destroy();
        return false;
      }
    }
    return super.push(chunk, encoding);
  }
}

/**
 * Check the request header the way Unit does.
 * @returns [status, headers]: status 0 when fine, else the error to send;
 *          headers after discard_unsafe_fields.
 */
function checkHeader(req: IncomingMessage, c: Connection): { status: number; headers: string[]; chunked: boolean; length: number } {
  const s = c.listener.table.settings;
  let headers = req.rawHeaders;
  let status = 0;
  let hosts = 0;
  let te = 0;
  let chunked = false;
  let length = -1;
  let copied = false;
  const limit = s.largeHeaderBufferSize;
  if ((req.method?.length ?? 0) + (req.url?.length ?? 0) + 10 >= limit) status = 431;
  for (let i = 0; i < headers.length && status === 0; i += 2) {
    const name = headers[i];
    const value = headers[i + 1];
    if (name.length > 255 || value.length >= limit) { status = 431; break; }
    if (unsafeName(name)) {
      if (s.discardUnsafeFields) {
        if (!copied) { headers = headers.slice(); copied = true; }
        headers.splice(i, 2);
        i -= 2;
      }
      continue;
    }
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          if (++hosts > 1 || value.includes('/') || value.includes('..')) status = 400;
        }
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') length = Number(value);
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') {
          if (value !== 'chunked') status = 501;
          else if (++te > 1) status = 400;
          else chunked = true;
        }
        break;
    }
  }
  if (status === 0) {
    if (chunked) {
      if (!s.chunkedTransform) status = 411;
      else if (length >= 0 || req.httpVersionMinor === 0) status = 400;
    } else if (length > s.maxBodySize) {
      status = 413;
    }
  }
  return { status, headers, chunked, length };
}

/**
 * Create the Request for a parsed header and run Unit's checks on it (§2.2–2.5),
 * then `extra` (the WebSocket handshake, §9; given only for upgrade requests,
 * whose bytes after the header are not read as a body). When a check fails
 * the error page is sent (connection closed afterwards) and null returned.
 * @returns the request, and whether a chunked body is to be read before routing
 */
export function acceptRequest(req: IncomingMessage, res: UnitResponse, c: Connection,
  extra?: (r: Request) => number): { r: Request; chunked: boolean } | null {
  const chk = checkHeader(req, c);
  const r = new Request(req, res, c, chk.headers);
  res.request = r;
  (req as UnitIncoming)._unitRequest = r;
  r.hasBody = chk.chunked || chk.length > 0;
  c.onRequest(extra === undefined && r.hasBody);

  let status = chk.status;
  if (status === 0) {
    if (req.httpVersionMajor !== 1) status = req.httpVersionMajor === 0 ? 400 : 505;
    else if (r.target.charCodeAt(0) !== 0x2f) status = 400;
  }
  if (status === 0) {
    const t = splitTarget(r.target);
    if (t === null) status = 400;
    else { r.path = t.path; r.query = t.query; r.hasQuery = t.hasQuery; }
  }
  // Plain HTTP on a TLS listener: after the header checks, before anything else (§10.4).
  if (status === 0 && c.plainOnTls) status = STATUS_PLAIN_HTTP_ON_TLS;
  if (status === 0 && extra !== undefined) status = extra(r);
  if (status !== 0) {
    r.forceClose = true;
    res.sendError(status);
    return null;
  }
  const host = r.header('host');
  if (host !== undefined) {
    r.hostPresent = true;
    r.host = normalizeHost(host);
  }
  if (c.listener.forwarded.length) applyForwarded(r, c.listener.forwarded);
  if (r.table.settings.logRoute) c.log.notice(`http request line "${r.requestLine}"`);
  return { r, chunked: chk.chunked };
}

/** `request` listener of every listener's http.Server. */
export function onRequest(req: IncomingMessage, response: import('node:http').ServerResponse): void {
  const a = acceptRequest(req, response as UnitResponse, connectionOf(req.socket));
  if (a === null) return;
  proceed(a);
}

/**
 * `checkContinue` listener (a request with `Expect: 100-continue`): the
 * interim `100 Continue` goes out only once the header passed Unit's checks,
 * so a body that would be refused (413 over `max_body_size`, 411, 400…) is
 * never invited (RFC 9110 §10.1.1).
 */
export function onCheckContinue(req: IncomingMessage, response: import('node:http').ServerResponse): void {
  const a = acceptRequest(req, response as UnitResponse, connectionOf(req.socket));
  if (a === null) return;
  response.writeContinue();
  proceed(a);
}

function proceed(a: { r: Request; chunked: boolean }): void {
  if (a.chunked) {
    (a.r.req as UnitIncoming).limitBody(a.r.table.settings.maxBodySize);
    readChunkedBody(a.r, route);
    return;
  }
  route(a.r);
}

/** Run the listener's pass for a request whose header (and chunked body) is in. */
export function route(r: Request): void {
  dispatch(r, r.listener.pass);
}

/**
 * The end of a request's response (UnitResponse.onDone): `completed` when it
 * finished (logged before Node moves on to the next pipelined one), else it
 * closed (after finishing, or because the connection went away).
 */
function finish(r: Request, completed: boolean): void {
  if (r.done) return;
  r.done = true;
  const res = r.res;
  const c = r.conn;
  if (!res.headersSent && res.outFields === null) res.status = 400;  // client went away before an answer (§2.7)
  const log = r.table.accessLog;
  if (log !== null) {
    // `$body_bytes_sent` is only ever read by the access log (of this connection's table).
    const written = c.socket.bytesWritten;
    if (res.headersSent || res.outFields !== null) r.bytesSent = Math.max(0, written - c.bytesMark - res.headerLength);
    c.bytesMark = written;
    log.log(r);
  }
  c.onResponseDone(completed && res.shouldKeepAlive);
}

/**
 * A request whose connection became a tunnel (WebSocket, §9) is over: log it
 * with the status the application answered and the bytes sent to the client.
 */
export function finishTunnel(r: Request, status: number, bytes: number): void {
  if (r.done) return;
  r.done = true;
  const c = r.conn;
  r.res.status = status;
  r.bytesSent = Math.max(0, bytes);
  c.bytesMark = c.socket.bytesWritten;
  r.table.accessLog?.log(r);
  c.onResponseDone(false);
}

/** A Request standing for a request that failed before it was parsed (access log only). */
function bareRequest(c: Connection, status: number, bytes: number): Request {
  const req = { method: '', url: '', rawHeaders: [], httpVersion: '1.1', httpVersionMinor: 1, httpVersionMajor: 1 } as unknown as IncomingMessage;
  const res = { status, outFields: [], shouldKeepAlive: false, chunkedEncoding: false, getHeaderNames: () => [] } as unknown as UnitResponse;
  const r = new Request(req, res, c, []);
  r.bytesSent = bytes;
  return r;
}

/** Log a request that failed before it was parsed. */
export function logBare(c: Connection, status: number, bytes: number): void {
  const log = c.listener.table.accessLog;
  if (log !== null) log.log(bareRequest(c, status, bytes));
}

interface ParserError extends Error { code?: string; rawPacket?: Buffer }

/** True when the header holds only `Transfer-Encoding: chunked` fields, more than one. */
function repeatedChunked(packet: Buffer | undefined): boolean {
  if (packet === undefined) return false;
  const text = packet.toString('latin1', 0, Math.min(packet.length, 65536));
  const end = text.indexOf('\r\n\r\n');
  const values = [...(end < 0 ? text : text.slice(0, end)).matchAll(/\ntransfer-encoding:[ \t]*([^\r\n]*?)[ \t]*\r?(?=\n|$)/gi)]
    .map((m) => m[1]);
  return values.length > 1 && values.every((v) => v === 'chunked');
}

/** Status Unit sends for a node:http parser error. */
function parserErrorStatus(e: ParserError): number {
  switch (e.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'HPE_INVALID_TRANSFER_ENCODING':
      // A repeated `chunked` field is a 400 in Unit; any other coding 501.
      return repeatedChunked(e.rawPacket) ? 400 : 501;
    case 'HPE_INVALID_VERSION': {
      const line = e.rawPacket?.toString('latin1', 0, Math.min(e.rawPacket.length, 8192)).split('\n', 1)[0] ?? '';
      return /HTTP\/[02-9]\.\d\r?$/.test(line) ? 505 : 400;
    }
    default:
      return 400;
  }
}

/** `clientError` listener: malformed requests and socket errors. */
export function onClientError(e: ParserError, socket: Socket): void {
  const c = connectionOf(socket);
  if (c === undefined || !e.code?.startsWith('HPE_') || !socket.writable) {
    socket.destroy();
    return;
  }
  if (e.code === 'HPE_INVALID_EOF_STATE') {
    // The client closed in the middle of a request: nothing to answer (logged as 400 on close).
    socket.destroy();
    return;
  }
  const status = parserErrorStatus(e);
  const res = (socket as unknown as { _httpMessage?: UnitResponse | null })._httpMessage;
  if (res) {
    // The error is in a body (or after a request already being answered).
    if (res.writableEnded) { socket.end(); return; }
    if (res.request !== null && !res.headersSent) {
      res.request.forceClose = true;
      res.sendError(status);
      return;
    }
    socket.destroy();
    return;
  }
  c.onBadRequest();
  const s = c.listener.table.settings;
  socket.end(rawErrorResponse(status, s.serverHeader, httpDate()), 'latin1');
  logBare(c, status, 54);
}

UnitResponse.onDone = finish;
