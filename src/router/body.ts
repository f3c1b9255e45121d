/**
 * Chunked request bodies (spec/router.md §2.7, `chunked_transform`): the
 * body is read completely (bounded by `max_body_size`, → 413) before routing,
 * and the request then carries a `Content-Length` field instead of
 * `Transfer-Encoding`, as Unit gives it to applications, upstreams and
 * `$header_*`. Every target (app, proxy, share, return) sees the same request.
 */
import { IncomingMessage } from 'node:http';
import type { Request } from './request.ts';

/**
 * Read the chunked body of `r`, then call `next(r)` with `r.req` replaced by a
 * fresh IncomingMessage carrying the decoded body and `r.rawHeaders` by the
 * fields with `Content-Length`. Read errors leave the answer to whoever
 * detected them (413 from the size limit, 400 from the parser, 408 from the timer).
 */
export function readChunkedBody(r: Request, next: (r: Request) => void): void {
  const src = r.req;
  const chunks: Buffer[] = [];
  let size = 0;
  src.on('data', (c: Buffer) => { chunks.push(c); size += c.length; });
  src.on('end', () => {
    if (r.res.headersSent || r.res.writableEnded) return;  // already answered (413, 400, 408)
    const body = Buffer.concat(chunks, size);
    const h = r.rawHeaders;
    const fields: string[] = [];
    for (let i = 0; i < h.length; i += 2) {
      if (h[i].toLowerCase() !== 'transfer-encoding') fields.push(h[i], h[i + 1]);
    }
    fields.push('Content-Length', String(size));
    const m = new IncomingMessage(src.socket);
    m.method = src.method;
    m.url = src.url;
    m.httpVersion = src.httpVersion;
    m.httpVersionMajor = src.httpVersionMajor;
    m.httpVersionMinor = src.httpVersionMinor;
    m.rawHeaders = fields;
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i < fields.length; i += 2) {
      const k = fields[i].toLowerCase();
      const prev = headers[k];
      headers[k] = prev === undefined ? fields[i + 1] : Array.isArray(prev) ? [...prev, fields[i + 1]] : [prev, fields[i + 1]];
    }
    m.headers = headers as IncomingMessage['headers'];
    m.complete = true;
    if (size > 0) m.push(body);
    m.push(null);
    r.rawHeaders = fields;
    (r as { req: IncomingMessage }).req = m;
    next(r);
  });
}
