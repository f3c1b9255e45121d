/**
 * Client connection state: the configuration a connection was accepted under,
 * its addresses, Unit's timers and the status counters (spec/router.md §2.10,
 * §2.11, §12).
 *
 * One inactivity timer per socket (`socket.setTimeout`) is re-armed with the
 * interval of the current phase:
 *   idle    waiting for the first byte of a request   → idle_timeout: raw 408, close
 *   header  header bytes arriving                      → header_read_timeout (total): 408 page
 *   busy    request being served                       → body_read_timeout while the body is
 *                                                        incomplete (408), send_timeout while
 *                                                        output is pending (close)
 *
 * Re-arming a socket timer allocates (a Timeout and a bound callback) and
 * moves the socket between timer lists, so it is done only when the phase
 * needs a shorter interval than the armed one. A longer one keeps the armed
 * timer and remembers the difference (`extra`): when the timer fires, it is
 * re-armed once for the rest. Socket reads and writes restart the timer, so
 * the interval still counts from the last activity; on a busy keep-alive
 * connection with Unit's default timeouts no timer is re-armed per request.
 * The start of a request is seen after the parser consumed input without
 * completing a request (its execute callback), not through a `data`
 * listener, which would take the socket off Node's native read path.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../runtime/log.ts';
import type { ListenerConfig } from './table.ts';
import type { Peer } from './request.ts';
import { SERVER_NAME } from '../runtime/version.ts';
import { httpDate } from './response.ts';
import { rawErrorResponse } from './errors.ts';
import { plainOnTls } from './tls-accept.ts';

/** Counters reported by `GET /status` (§12). */
export class Counters {
  accepted = 0;
  closed = 0;
  idle = 0;
  requests = 0;
}

/** What connections share with the Router that owns them. */
export interface RouterState {
  counters: Counters;
  connections: Set<Connection>;
  log: Logger;
  /** Writes the access-log line of a request that failed before routing. */
  logBare(c: Connection, status: number, bytes: number): void;
}

export const IDLE = 0;
export const HEADER = 1;
export const BUSY = 2;
export const CLOSING = 3;

const kConnection = Symbol('junction.connection');

/**
 * Index of the parser's "execute" callback slot (called by Node after each
 * piece of input the parser consumed straight from the socket), found once
 * from the layout Node gives its server parsers: the slot holding its bound
 * `onParserExecute`. -1 when the layout is not the expected one; connections
 * then watch `data` events instead, which costs Node's fast path (a socket
 * with a `data` listener is read through JavaScript streams instead of being
 * fed to the parser natively).
 */
let kOnExecute = -2;

function executeSlot(parser: Record<number, unknown>): number {
  if (kOnExecute !== -2) return kOnExecute;
  kOnExecute = -1;
  for (let i = 0; i < 10; i++) {
    const f = parser[i];
    if (typeof f === 'function' && f.name === 'bound onParserExecute') {
      kOnExecute = i;
      break;
    }
  }
  return kOnExecute;
}

/** The Connection of a client socket accepted by a listener. */
export function connectionOf(socket: Socket): Connection {
  return (socket as unknown as Record<symbol, Connection>)[kConnection];
}

function family(f: string | undefined): 'IPv4' | 'IPv6' | 'unix' {
  return f === 'IPv6' ? 'IPv6' : f === 'IPv4' ? 'IPv4' : 'unix';
}

/** One accepted client connection (created by the listener's `connection` event). */
export class Connection {
  readonly socket: Socket;
  /** The listener configuration (and through it the table) this connection was accepted under. */
  readonly listener: ListenerConfig;
  readonly state: RouterState;
  readonly log: Logger;
  readonly remoteAddr: string;
  readonly remoteFamily: 'IPv4' | 'IPv6' | 'unix';
  readonly remotePort: number;
  readonly localAddr: string;
  readonly localPort: string;
  readonly localFamily: 'IPv4' | 'IPv6' | 'unix';
  readonly localPeer: Peer;
  /** TLS was negotiated (a TLS listener's connection, tls-accept.ts). */
  readonly tls: boolean;
  /** Plain HTTP on a TLS listener: every request gets the 497 answer (§10.4). */
  readonly plainOnTls: boolean;
  phase = IDLE;
  /** Requests parsed and not yet answered (pipelining). */
  outstanding = 0;
  /** `performance.now()` of the first header byte of the current request. */
  headerStart = 0;
  /** The current request was already counted when its first byte arrived. */
  counted = false;
  /** `socket.bytesWritten` after the previous response, for `$body_bytes_sent`. */
  bytesMark = 0;
  /** No further request is served (graceful shutdown, idle timeout). */
  closing = false;
  /** The interval the socket's timer is armed with (ms). */
  private armed = 0;
  /** What the current phase's interval adds to `armed` (ms): re-armed once when the timer fires. */
  private extra = 0;

  constructor(socket: Socket, listener: ListenerConfig, state: RouterState) {
    this.socket = socket;
    this.listener = listener;
    this.state = state;
    this.log = state.log;
    this.remoteFamily = family(socket.remoteFamily);
    this.remotePort = socket.remotePort ?? 0;
    this.remoteAddr = this.remoteFamily === 'unix' ? 'unix:' : socket.remoteAddress ?? '';
    if (listener.unixPath !== null) {
      this.localFamily = 'unix';
      this.localAddr = 'unix:' + listener.unixPath;
      this.localPort = '';
    } else {
      this.localFamily = family(socket.localAddress?.includes(':') ? 'IPv6' : 'IPv4');
      this.localAddr = socket.localAddress ?? '';
      this.localPort = String(socket.localPort ?? '');
    }
    this.localPeer = { family: this.localFamily, address: this.localAddr, port: Number(this.localPort) || 0 };
    this.tls = (socket as Socket & { encrypted?: boolean }).encrypted === true;
    this.plainOnTls = !this.tls && plainOnTls(socket);
    (socket as unknown as Record<symbol, Connection>)[kConnection] = this;
    state.counters.accepted++;
    state.counters.idle++;
    state.connections.add(this);
    this.setTimer(listener.table.settings.idleTimeout);
    const parser = (socket as unknown as { parser?: (Record<number, unknown> & { _consumed?: boolean }) | null }).parser;
    const slot = parser?._consumed === true ? executeSlot(parser) : -1;
    if (slot >= 0) {
      // Bytes consumed while idle that did not make a whole request: a header is arriving.
      const node = parser![slot] as (ret: unknown) => void;
      parser![slot] = (ret: unknown): void => {
        node(ret);
        if (this.phase === IDLE && typeof ret === 'number' && ret > 0) this.onBytes();
      };
    } else {
      socket.prependListener('data', onSocketData);
    }
    socket.on('close', onSocketClose);
  }

  /** Arm the socket timer with `ms` now. */
  private setTimer(ms: number): void {
    this.armed = ms;
    this.extra = 0;
    this.socket.setTimeout(ms);
  }

  /** Make the phase's inactivity interval `ms` (see the module comment). */
  private interval(ms: number): void {
    if (ms < this.armed || this.armed === 0 || ms === 0) this.setTimer(ms);
    else this.extra = ms - this.armed;
  }

  /** Leave the idle phase (called when header bytes arrive or a request starts). */
  private leaveIdle(): void {
    if (this.phase === IDLE) this.state.counters.idle--;
  }

  /** First bytes of a request arrived. */
  onBytes(): void {
    if (this.phase !== IDLE) return;
    this.leaveIdle();
    this.phase = HEADER;
    this.headerStart = performance.now();
    this.counted = true;
    this.state.counters.requests++;
    this.interval(this.listener.table.settings.headerReadTimeout);
  }

  /** A request could not be parsed: its error is answered and the connection closes after it. */
  onBadRequest(): void {
    this.leaveIdle();
    if (!this.counted) this.state.counters.requests++;
    this.counted = false;
    this.phase = CLOSING;
  }

  /** A request header was parsed and the request handed to routing. */
  onRequest(bodyExpected: boolean): void {
    this.leaveIdle();
    this.phase = BUSY;
    this.outstanding++;
    if (!this.counted) this.state.counters.requests++;
    this.counted = false;
    const s = this.listener.table.settings;
    this.interval(bodyExpected ? s.bodyReadTimeout : s.sendTimeout);
  }

  /** The request body has been received completely. */
  onBodyComplete(): void {
    if (this.phase === BUSY) this.interval(this.listener.table.settings.sendTimeout);
  }

  /** A response completed (or was abandoned); `keepAlive`: the connection stays open. */
  onResponseDone(keepAlive: boolean): void {
    if (this.outstanding > 0) this.outstanding--;
    if (this.outstanding > 0 || this.phase === CLOSING || this.socket.destroyed) return;
    if (!keepAlive || this.closing) {
      this.phase = CLOSING;
      if (keepAlive) this.socket.end();
      return;
    }
    this.phase = IDLE;
    this.state.counters.idle++;
    this.interval(this.listener.table.settings.idleTimeout);
  }

  /** Close now if nothing is in progress; otherwise after the current response. */
  closeWhenIdle(): void {
    this.closing = true;
    if (this.phase === IDLE) this.socket.destroy();
  }

  /** The socket's inactivity timer fired. */
  onTimeout(): void {
    if (this.extra > 0) {
      this.setTimer(this.extra);
      return;
    }
    const s = this.listener.table.settings;
    switch (this.phase) {
      case IDLE: {
        // Unit's idle answer: always the versioned Server, no body, not logged.
        this.leaveIdle();
        this.phase = CLOSING;
        this.setTimer(10000);
        this.socket.end(`HTTP/1.1 408 Request Timeout\r\nServer: ${SERVER_NAME}\r\n` +
          `Connection: close\r\nContent-Length: 0\r\nDate: ${httpDate()}\r\n\r\n`);
        return;
      }
      case HEADER: {
        const left = s.headerReadTimeout - (performance.now() - this.headerStart);
        if (left > 0) {
          this.setTimer(Math.ceil(left));
          return;
        }
        this.phase = CLOSING;
        this.setTimer(10000);
        const page = rawErrorResponse(408, s.serverHeader, httpDate());
        this.socket.end(page, 'latin1');
        this.state.logBare(this, 408, 54);
        return;
      }
      case BUSY: {
        const parser = (this.socket as unknown as { parser?: { incoming?: { complete: boolean; _unitRequest?: { res: { headersSent: boolean; sendError(n: number): void }; forceClose: boolean } } } }).parser;
        const req = parser?.incoming;
        if (req && !req.complete) {
          const r = req._unitRequest;
          if (r && !r.res.headersSent) {
            r.forceClose = true;
            r.res.sendError(408);
          } else {
            this.socket.destroy();
          }
          return;
        }
        if (this.socket.writableLength > 0) this.socket.destroy();
        return;
      }
      default:
        this.socket.destroy();
    }
  }

  /** The socket closed. */
  onClose(): void {
    const c = this.state.counters;
    if (this.phase === IDLE) c.idle--;
    else if (this.phase === HEADER) this.state.logBare(this, 400, 0);
    this.phase = CLOSING;
    c.closed++;
    this.state.connections.delete(this);
  }
}

function onSocketData(this: Socket): void {
  connectionOf(this).onBytes();
}

function onSocketClose(this: Socket): void {
  connectionOf(this).onClose();
}
