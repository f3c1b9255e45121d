/**
 * The contract between the router (which owns client connections and routing)
 * and the application manager (which owns process pools and transports).
 *
 *   router.apply(config)
 *     └─ apps.prepare(config.applications)  → AppTransaction (new processes up)
 *          ├─ tx.target(name, target)        → AppTarget, used to compile `pass`
 *          ├─ tx.commit()                    when the whole config applied
 *          └─ tx.abort()                     when anything else failed (old config keeps serving)
 *
 * Process creation is privileged work and belongs to main: the manager asks
 * through AppHost (an IPC round trip), never spawns by itself.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** What main needs to start one application process. */
export interface AppSpawnSpec {
  /** Application name, for the process title and log lines. */
  app: string;
  /** Absolute path of the program to exec (no PATH search, as Unit). */
  executable: string;
  /** Arguments after argv[0]. */
  arguments: string[];
  /** The complete environment of the process. */
  env: Record<string, string>;
  /** Working directory; default: main's cwd. */
  cwd?: string;
  /** Credentials, honoured only when main runs as root. */
  user?: string;
  group?: string;
  /** Files for fd 1 / fd 2 (`stdout`/`stderr` app options); default: the error log. */
  stdout?: string;
  stderr?: string;
  /**
   * Wait for the process to report readiness (any byte written to the fd named
   * by `JUNCTION_READY_FD`) before resolving; otherwise resolve on successful exec.
   */
  waitReady: boolean;
  /**
   * Token of a connection channel the router opened to main's rendezvous socket
   * (transport/handoff.ts): that connection becomes the process's fd 5, Node's
   * IPC channel (`NODE_CHANNEL_FD=5`). Only for Node applications.
   */
  channel?: string;
}

/**
 * Started process. Main bound a Unix stream socket for it, put it in listening
 * state and passed it as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`); `socket` is its path,
 * for the router to connect to.
 */
export interface AppSpawnResult { pid: number; socket: string }

/** Services of main used by the manager (implemented over IPC in the router process). */
export interface AppHost {
  /** Rejects with a log-ready message when the process cannot start or exits before it is ready. */
  spawn(spec: AppSpawnSpec): Promise<AppSpawnResult>;
  /** Signal a process started through spawn(). */
  kill(pid: number, signal?: NodeJS.Signals): void;
  /** Main's rendezvous socket for connection channels; absent: no connection hand-off. */
  channelPath?: string;
}

/** One request handed to an application, with the metadata Unit gives apps (spec/applications.md §4.1). */
export interface AppRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** Raw request target as received (not changed by rewrite). */
  target: string;
  /** Decoded, normalised path after any rewrite. */
  path: string;
  /** Raw query (text after the first `?`), '' if none. */
  query: string;
  /** Client address after forwarded/client_ip processing; `unix:` form for Unix peers. */
  remoteAddr: string;
  /** Client port after forwarded/client_ip processing; 0 (or absent) for Unix peers. */
  remotePort?: number;
  /** Listener-side address and port ('' port for Unix listeners). */
  localAddr: string;
  localPort: string;
  /** Normalised Host without port, or `localhost` when absent. */
  serverName: string;
  tls: boolean;
  /** Request fields after discard_unsafe_fields, as [name, value, name, value, …]. */
  rawHeaders: string[];
  /** Send the router's error page with this status (e.g. 503) if nothing was sent yet; else close. */
  fail(status: number): void;
}

/** A WebSocket/Upgrade request passed through to an HTTP-speaking app. */
export interface AppUpgrade extends Omit<AppRequest, 'res' | 'fail'> {
  socket: Duplex;
  head: Buffer;
}

/**
 * An accepted client connection, nothing read from it yet, offered whole to an
 * application process: for a listener that passes straight to a Node
 * application, with nothing of the router in between (no access log,
 * forwarded, compression; docs/external-apps.md, "Connection hand-off").
 */
export interface AppHandoff {
  socket: Socket;
  /** `Server` field value (`settings.http.server_version`). */
  server: string;
  /** `settings.http.idle_timeout`, ms. */
  idleTimeout: number;
  /** `settings.http.max_body_size`, bytes. */
  maxBodySize: number;
  /** The `/status` counters: the process reports requests and closed connections into them. */
  counters: { accepted: number; closed: number; requests: number };
  /** Take back a connection the process returns (it is quitting) and serve it as newly accepted. */
  reinject(socket: Socket): void;
}

/** A resolved `pass: "applications/NAME[/TARGET]"`. */
export interface AppTarget {
  serve(r: AppRequest): void;
  upgrade?(u: AppUpgrade): void;
  /**
   * Give the connection to a process of the application (which then serves it
   * alone). @returns false when it cannot now: the router serves it.
   */
  handoff?(h: AppHandoff): boolean;
  /**
   * The application's processes take whole connections (AppLaunch.handoff):
   * true when this router hands them over (handoff() does), 'primary' on a
   * router that reaches the application through the primary router, which
   * does (router/app-gateway.ts).
   */
  readonly wholeConnections?: boolean | 'primary';
}

export interface AppStatus {
  processes: { running: number; starting: number; idle: number };
  requests: { active: number };
}

export interface AppTransaction {
  /** Target of the prepared generation set; undefined when the app or target does not exist. */
  target(name: string, target?: string): AppTarget | undefined;
  /** Make the prepared set current; replaced/removed generations drain and stop. */
  commit(): void;
  /** Stop every process this transaction started; the current set stays. */
  abort(): void;
}

export interface AppManagerLike {
  prepare(applications: Record<string, unknown>): Promise<AppTransaction>;
  /** Target in the current (committed) set, for templated `pass` at request time. */
  target(name: string, target?: string): AppTarget | undefined;
  status(): Record<string, AppStatus>;
  /** Replace the processes of app `name` (GET /control/applications/NAME/restart). */
  restart(name: string): Promise<void>;
  /** Main reports that a process started through AppHost.spawn() exited. */
  processExited(pid: number, code: number | null, signal: string | null): void;
  /** Stop all processes: graceful → let in-flight requests finish first. */
  shutdown(graceful: boolean): Promise<void>;
}
