/**
 * TLS on a listener's connections (spec/router.md §2.1 step 1, §10).
 *
 * A listener keeps one http.Server for as long as its address is configured,
 * whether or not it has `tls`, so that TLS can be switched on, off or to
 * other certificates by a reconfiguration without touching the socket.
 * Once a listener has had `tls`, its server's `connection` events go through
 * a gate first: when the listener's current configuration has `tls`, a newly
 * accepted connection is held until its first bytes arrive —
 *
 *   0x16 (a TLS handshake record)  the connection is wrapped in a TLSSocket
 *                                   with that configuration's contexts (SNI
 *                                   picks the bundle, tls.ts) and reaches
 *                                   node:http once the handshake is done;
 *   anything else                   it reaches node:http as it is, marked, and
 *                                   each request on it is answered with Unit's
 *                                   497 page (`400 The plain HTTP request was
 *                                   sent to HTTPS port`, http.ts).
 *
 * The wait for the first bytes and the handshake are bounded by the
 * listener's `idle_timeout`; a failed or timed-out handshake closes the
 * connection without an answer. A connection keeps the contexts it was
 * accepted with: a new configuration applies to new connections only.
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { ListenerConfig } from './table.ts';
import type { TlsSetup } from './tls.ts';

const kPlain = Symbol('junction.plainOnTls');
const kGated = Symbol('junction.tlsGate');

type Marked = net.Socket & { [kPlain]?: boolean };
type Gated = net.Server & { [kGated]?: true };
/** TLSSocket internals: hands errors to the socket's users once the handshake is done (as tls.Server does). */
type Releasable = tls.TLSSocket & { _releaseControl?: () => boolean };

/** True for a plain-HTTP connection accepted on a TLS listener. */
export function plainOnTls(socket: net.Socket): boolean {
  return (socket as Marked)[kPlain] === true;
}

/** True for a connection accepted by a TLS listener: TLS, or plain HTTP that gets the 497 answer. */
export function viaTls(socket: net.Socket): boolean {
  return socket instanceof tls.TLSSocket || plainOnTls(socket);
}

/**
 * Route `server`'s new connections through TLS while the listener's
 * configuration (`current()`) has `tls`. Installed the first time the
 * listener has `tls` (later calls do nothing), so a listener that never had
 * it pays nothing per event. Connections the gate lets through are emitted
 * again as `connection` and reach every listener of the event as before.
 */
export function gateTls(server: net.Server, current: () => ListenerConfig): void {
  const s = server as Gated;
  if (s[kGated] || current().tls === null) return;
  s[kGated] = true;
  const emit = server.emit as (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;
  const deliver = (socket: net.Socket): void => { emit.call(server, 'connection', socket); };
  server.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connection') {
      const socket = args[0] as net.Socket;
      const c = current();
      if (c.tls !== null && !viaTls(socket)) {
        accept(socket, c.tls, c.table.settings.idleTimeout, deliver);
        return true;
      }
    }
    return emit.call(this, event, ...args);
  } as net.Server['emit'];
}

/**
 * Look at the first bytes of `raw` and deliver it as TLS (after the
 * handshake) or as marked plain HTTP; close it on EOF, error or timeout.
 * @param idle ms allowed for the first bytes and for the handshake (0: no limit)
 */
function accept(raw: net.Socket, setup: TlsSetup, idle: number, deliver: (socket: net.Socket) => void): void {
  const close = (): void => { raw.destroy(); };
  raw.on('error', close);
  raw.on('timeout', close);
  raw.setTimeout(idle);
  raw.once('readable', () => {
    const first = raw.read() as Buffer | null;
    raw.removeListener('timeout', close);
    raw.setTimeout(0);
    if (first === null || first.length === 0) {
      raw.destroy();
      return;
    }
    raw.unshift(first);
    if (first[0] !== 0x16) {
      raw.removeListener('error', close);
      (raw as Marked)[kPlain] = true;
      deliver(raw);
      return;
    }
    // The bytes read so far are fed to the TLS layer by the TLSSocket itself.
    const t = new tls.TLSSocket(raw, { ...setup.options, isServer: true }) as Releasable;
    const fail = (): void => { t.destroy(); };
    t.on('error', fail);
    t.on('timeout', fail);
    // The listener's sockets are half-open (node:http ends them itself): a
    // client leaving in the middle of the handshake must be closed here.
    t.on('end', fail);
    t.setTimeout(idle);
    t.once('secure', () => {
      t.removeListener('error', fail);
      t.removeListener('timeout', fail);
      t.removeListener('end', fail);
      t.setTimeout(0);
      t._releaseControl?.();
      if (t.destroyed) return;
      deliver(t);
    });
  });
}
