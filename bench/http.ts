/**
 * A minimal HTTP client for the harness: one request over TCP or a Unix
 * socket, with a time bound, answering status and body.
 */
import http from 'node:http';

/** A complete answer: status, headers and the whole body. */
export interface Reply { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/** Options of {@link request}: node:http's, plus a body and a timeout in ms. */
export interface RequestOptions extends http.RequestOptions {
  body?: string;
  timeoutMs?: number;
}

/** One request (no connection reuse); rejects on socket errors and after `timeoutMs` (default 10 s). */
export function request(o: RequestOptions): Promise<Reply> {
  const { body, timeoutMs = 10_000, ...opts } = o;
  return new Promise((resolve, reject) => {
    const req = http.request({ agent: false, ...opts }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.setHeader('Content-Length', Buffer.byteLength(body));
    req.end(body);
  });
}

/** GET http://127.0.0.1:port/path. */
export function get(port: number, path: string, timeoutMs = 10_000): Promise<Reply> {
  return request({ host: '127.0.0.1', port, path, timeoutMs });
}
