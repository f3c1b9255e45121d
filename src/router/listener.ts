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
import { UnitIncoming, onRequest, onClientError } from './http.ts';
import { Connection, connectionOf, type RouterState } from './connection.ts';
import { onUpgrade, shouldUpgrade } from './websocket.ts';

function onTimeout(socket: Socket): void {
  connectionOf(socket)?.onTimeout();
}

/** Node's limit on the whole header, from Unit's buffer model (§2.6). */
function maxHeaderSize(c: ListenerConfig): number {
  const s = c.table.settings;
  return 2048 + Math.max(1, s.largeHeaderBuffers) * Math.max(1024, s.largeHeaderBufferSize);
}

/** A listener's http.Server and the configuration new connections get. */
export class Listener {
  readonly name: string;
  config: ListenerConfig;
  readonly server: http.Server;
  private readonly state: RouterState;

  constructor(config: ListenerConfig, state: RouterState) {
    this.name = config.name;
    this.config = config;
    this.state = state;
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
    this.server.on('connection', (socket: Socket) => { new Connection(socket, this.config, this.state); });
    this.server.on('request', onRequest);
    this.server.on('clientError', onClientError);
    this.server.on('upgrade', onUpgrade);
    this.server.on('timeout', onTimeout);
  }

  /** Use a new configuration for connections accepted from now on. */
  update(config: ListenerConfig): void {
    this.config = config;
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
