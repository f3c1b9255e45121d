/**
 * The seam between a process pool and the transports that carry requests to
 * one application process (HTTP/1.1 for `external`, the app protocol for
 * language launchers).
 *
 *   pool ──dispatch(ex)──▶ AppConnection ──▶ process
 *        ◀─activity()/finish()──
 *
 * One Exchange per request. The pool owns accounting and `limits.timeout`;
 * the transport owns the bytes.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AppRequest, AppUpgrade } from './types.ts';
import { SERVER_NAME } from '../runtime/version.ts';

export interface Exchange {
  /** The request (for upgrades: `upgrade` is set and `r` is unused). */
  readonly r: AppRequest;
  readonly upgrade: AppUpgrade | undefined;
  /** Index of the application target (`targets`), 0 when the app has none. */
  readonly target: number;
  /** Transport-private per-request state. */
  state: unknown;
  /** A sign of life from the app (headers, a body chunk): re-arms `limits.timeout`. */
  activity(): void;
  /** The exchange became a tunnel (101): no more `limits.timeout`. */
  tunnel(): void;
  /** Answer the client with an error page if nothing was sent yet, else close its connection. Idempotent. */
  fail(status: number): void;
  /** The process is done with this request (success, failure or after abandon()). Exactly once. */
  finish(): void;
  /**
   * The process is gone and nothing of the request was consumed: give it back
   * to the pool for another process. `maybeSeen`: the dead process may have read
   * it (allowed once per request, for idempotent requests only — the caller
   * checks the method). Returns false when that is not possible; the transport
   * then fails and finishes it. After true, the transport forgets the exchange.
   */
  requeue(maybeSeen?: boolean): boolean;
}

/** A transport's view of one process. */
export interface AppConnection {
  /** Pass `ex` to the process; the transport calls ex.finish() exactly once. */
  dispatch(ex: Exchange): void;
  /**
   * The pool answered the client already (timeout): stop relaying output of `ex`
   * and discard the rest. ex.finish() follows when the process frees the request slot.
   */
  abandon(ex: Exchange): void;
  /** Drop all connections; in-flight exchanges fail (503 before headers, else close) and finish. */
  close(): void;
}

const ERROR_BODY = (status: number) => {
  const code = String(status).padStart(3, '0');
  return `<!DOCTYPE html><title>Error ${code}</title><p>Error ${code}.\r\n`;
};

const REASONS: Record<number, string> = { 500: 'Internal Server Error', 503: 'Service Unavailable' };

/**
 * Write a router-style error response (spec/router.md §2.9) on a raw client
 * socket and close it; used where no ServerResponse exists (upgrades).
 */
export function writeRawError(socket: Duplex, status: number): void {
  if (socket.destroyed) return;
  const body = ERROR_BODY(status);
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\n` +
    `Content-Type: text/html\r\nServer: ${SERVER_NAME}\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * End a response whose body came out shorter than the Content-Length the
 * application announced: the client connection is closed once what there is
 * has been sent, so that the client sees the response as incomplete (RFC 9112
 * §6.3, §8) instead of waiting on a connection nothing more arrives on.
 */
export function endShort(res: ServerResponse): void {
  res.shouldKeepAlive = false;
  (res as unknown as { _last: boolean })._last = true;
  res.end();
}

/**
 * Response fields an application may not set: the router owns them
 * (spec/router.md §2.8, §4.8). Lower-case names.
 */
export const DROPPED_RESPONSE_FIELDS = new Set([
  'server', 'connection', 'transfer-encoding', 'keep-alive', 'upgrade', 'sec-websocket-accept', 'proxy-connection',
]);
