/**
 * WebSocket upgrades (spec/router.md §9): Unit's handshake checks, then
 * normal routing; when the final action is an application that takes
 * upgrades (`AppTarget.upgrade`), the client connection is handed to it and
 * becomes a tunnel (the application answers 101 and speaks WebSocket).
 *
 * Handshake (a request whose Connection contains `upgrade` and whose Upgrade
 * is `websocket`, any case): method other than GET → 400; HTTP version other
 * than 1.1 → 400; Sec-WebSocket-Key absent or not 24 characters → 400;
 * Sec-WebSocket-Version other than 13 → 426 with `Sec-WebSocket-Version: 13`.
 *
 * Any other final action (return, share, proxy, no route → 404) answers the
 * request as a normal one, and so does an application without upgrade support
 * — as in Unit, where such an application simply gets the request and its
 * answer (not 101) goes back to the client. Keep-alive ends after an upgrade
 * request either way.
 *
 * Node hands upgrade requests over with the socket detached from its HTTP
 * machinery; the response object is attached to the socket by hand here.
 * Only WebSocket handshakes take this path (`shouldUpgradeCallback`, Node
 * 24.9+); on older Node every Upgrade request arrives here and the other
 * protocols are answered as normal requests, with the connection closed after.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { AppTarget, AppUpgrade } from '../apps/types.ts';
import type { Request } from './request.ts';
import { UnitResponse } from './response.ts';
import { connectionOf } from './connection.ts';
import { acceptRequest, finishTunnel, route } from './http.ts';

/** The response Node attached to a socket, if any. */
const attached = (s: Socket): unknown => (s as unknown as { _httpMessage?: unknown })._httpMessage;

/** True when `req` asks for a WebSocket (Connection has `upgrade`, Upgrade is `websocket`). */
export function isWebSocketHandshake(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  const connection = req.headers.connection;
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket' &&
    typeof connection === 'string' && connection.toLowerCase().includes('upgrade');
}

/** `shouldUpgradeCallback` of the listeners' servers: only WebSocket handshakes leave the HTTP path. */
export function shouldUpgrade(req: IncomingMessage): boolean {
  return isWebSocketHandshake(req);
}

/** Unit's handshake checks (§9): 0 when fine, else the status to answer. */
function handshakeStatus(r: Request): number {
  if (r.method !== 'GET') return 400;
  if (r.req.httpVersionMajor !== 1 || r.req.httpVersionMinor !== 1) return 400;
  const key = r.header('sec-websocket-key');
  if (key === undefined || key.length !== 24) return 400;
  if (r.header('sec-websocket-version') !== '13') return 426;
  return 0;
}

/** `upgrade` listener of the listeners' servers. */
export function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const s = socket as Socket;
  const c = connectionOf(s);
  if (c === undefined) {
    s.destroy();
    return;
  }
  const res = new UnitResponse(req);
  res.assignSocket(s);
  res.shouldKeepAlive = false;
  // Node's own end-of-response handling is not attached to a detached socket.
  res.on('finish', () => { if (attached(s) === res) res.detachSocket(s); s.end(); });
  const ws = isWebSocketHandshake(req);
  const a = acceptRequest(req, res, c, ws ? handshakeStatus : undefined);
  if (a === null) return;
  if (ws) a.r.upgrade = { socket: s, head };
  route(a.r);
}

/** First status line written on `socket`: its code, and the length of the header block when seen. */
function sniffStatus(socket: Socket, seen: (status: number, headerLength: number) => void): void {
  const write = socket.write;
  const end = socket.end;
  const restore = (): void => {
    socket.write = write;
    socket.end = end;
  };
  const look = (chunk: unknown): void => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    restore();
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    const h = text.indexOf('\r\n\r\n');
    seen(m !== null ? Number(m[1]) : 0, h < 0 ? 0 : h + 4);
  };
  socket.write = function (this: Socket, chunk: unknown, ...rest: unknown[]): boolean {
    look(chunk);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as Socket['write'];
  socket.end = function (this: Socket, chunk?: unknown, ...rest: unknown[]): Socket {
    look(chunk);
    return (end as (...a: unknown[]) => Socket).call(this, chunk, ...rest);
  } as Socket['end'];
}

/**
 * Hand an upgrade request to application `target` (called by the pass to an
 * application). @returns false when the target does not take upgrades: the
 * caller serves it as a normal request.
 */
export function upgradeApp(r: Request, target: AppTarget): boolean {
  const up = r.upgrade;
  if (up === null || target.upgrade === undefined) return false;
  const socket = up.socket;
  const res = r.res;
  // From here on the application owns the connection.
  if (attached(socket) === res) res.detachSocket(socket);
  socket.setTimeout(0);
  const start = socket.bytesWritten;
  let status = 0;
  let headerLength = 0;
  sniffStatus(socket, (st, h) => { status = st; headerLength = h; });
  socket.once('close', () => finishTunnel(r, status || 101, socket.bytesWritten - start - headerLength));
  const u: AppUpgrade = {
    req: r.req,
    socket,
    head: up.head,
    target: r.target,
    path: r.path,
    query: r.query,
    remoteAddr: r.remoteAddr,
    localAddr: r.localAddr,
    localPort: r.localPort,
    serverName: r.serverName,
    tls: r.tls,
    rawHeaders: r.rawHeaders,
  };
  target.upgrade(u);
  return true;
}
