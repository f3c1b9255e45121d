/**
 * One listening socket (spec/router.md §1): an http.Server around the handle
 * main bound for the listener address. The server lives as long as the
 * address stays in the configuration; a new configuration only replaces
 * `config`, which new connections pick up (accepted ones keep theirs).
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { ListenerConfig } from './table.ts';
import { UnitResponse } from './response.ts';
import { UnitIncoming, onRequest, onCheckContinue, onClientError } from './http.ts';
import { Connection, connectionOf, type RouterState } from './connection.ts';
import { onUpgrade, shouldUpgrade } from './websocket.ts';
import { gateTls, viaTls } from './tls-accept.ts';
import { AppHandler } from './actions/pass.ts';
import type { AppTarget } from '../apps/types.ts';

function onTimeout(socket: Socket): void {
  connectionOf(socket)?.onTimeout();
}

/** Node's limit on the whole header, from Unit's buffer model (§2.6). */
function maxHeaderSize(c: ListenerConfig): number {
  const s = c.table.settings;
  return 2048 + Math.max(1, s.largeHeaderBuffers) * Math.max(1024, s.largeHeaderBufferSize);
}

/**
 * The application that takes this listener's connections whole (a Node app
 * behind a listener that passes straight to it, with nothing of the router
 * per request: no access log, forwarded, compression or log_route), or null.
 * See AppTarget.handoff and docs/external-apps.md.
 */
function handoffTarget(c: ListenerConfig): AppTarget | null {
  const s = c.table.settings;
  if (!(c.pass instanceof AppHandler) || c.pass.target.handoff === undefined) return null;
  if (c.forwarded.length > 0 || c.table.accessLog !== null || s.compression !== null || s.logRoute) return null;
  return c.pass.target;
}

/**
 * Whether this router leaves the listener to the primary router (router 0):
 * true on another router for a plain listener whose connections the primary
 * hands whole to the application's processes (the same conditions as
 * handoffTarget). Only the primary accepts on it then — it gives each
 * connection away at once — where through this router every request would
 * cross both routers (router/app-gateway.ts). See docs/external-apps.md.
 */
export function leftToPrimary(c: ListenerConfig): boolean {
  const s = c.table.settings;
  if (c.tls !== null || !(c.pass instanceof AppHandler) || c.pass.target.wholeConnections !== 'primary') return false;
  return !(c.forwarded.length > 0 || c.table.accessLog !== null || s.compression !== null || s.logRoute);
}

/** A listener's http.Server and the configuration new connections get. */
export class Listener {
  readonly name: string;
  config: ListenerConfig;
  readonly server: http.Server;
  private readonly state: RouterState;
  private handoff: AppTarget | null;

  constructor(config: ListenerConfig, state: RouterState) {
    this.name = config.name;
    this.config = config;
    this.state = state;
    this.handoff = handoffTarget(config);
    this.server = http.createServer({
      ServerResponse: UnitResponse as unknown as typeof http.ServerResponse,
      IncomingMessage: UnitIncoming,
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      keepAliveTimeout: 0,
      headersTimeout: 0,
      requestTimeout: 0,
      maxHeaderSize: maxHeaderSize(config),
      noDelay: true,
      // WebSocket handshakes go to onUpgrade; other Upgrade requests stay normal requests.
      shouldUpgradeCallback: shouldUpgrade,
    });
    // Before node:http takes the socket: a connection handed over is gone from here.
    this.server.prependListener('connection', (socket: Socket) => { this.offer(socket); });
    this.server.on('connection', (socket: Socket) => {
      if (!socket.destroyed) new Connection(socket, this.config, this.state);
    });
    this.server.on('request', onRequest);
    this.server.on('clientError', onClientError);
    this.server.on('checkContinue', onCheckContinue);
    this.server.on('upgrade', onUpgrade);
    this.server.on('timeout', onTimeout);
    gateTls(this.server, () => this.config);
  }

  /** Offer a new connection to the application that takes them whole, if any. */
  private offer(socket: Socket): void {
    const t = this.handoff;
    // A TLS listener's connection ends TLS here: never handed over.
    if (t === null || viaTls(socket)) return;
    const s = this.config.table.settings;
    t.handoff!({
      socket, server: s.serverHeader, idleTimeout: s.idleTimeout, maxBodySize: s.maxBodySize,
      counters: this.state.counters, reinject: this.reinject,
    });
  }

  /** A connection an application gives back: served as newly accepted (offered again). */
  private readonly reinject = (socket: Socket): void => {
    if (this.server.listening) this.server.emit('connection', socket);
    else socket.destroy();
  };

  /** Use a new configuration for connections accepted from now on. */
  update(config: ListenerConfig): void {
    this.config = config;
    this.handoff = handoffTarget(config);
    gateTls(this.server, () => this.config);
    (this.server as unknown as { maxHeaderSize: number }).maxHeaderSize = maxHeaderSize(config);
  }

  /**
   * Start accepting on `handle` (bound by main, not yet listening).
   * @throws Error when listen() fails.
   */
  start(handle: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once('error', onError);
      const backlog = this.config.backlog >= 0 ? this.config.backlog : undefined;
      this.server.listen(handle as object, backlog, () => {
        this.server.removeListener('error', onError);
        this.server.on('error', (e) => this.state.log.error(`listener "${this.name}": ${e.message}`));
        resolve();
      });
    });
  }

  /** Stop accepting; open connections keep being served. */
  close(): void {
    this.server.close();
  }
}
