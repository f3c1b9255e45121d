/**
 * Shapes shared by the harness: where a run keeps its files, which CPUs the
 * servers and the load generator use, and a running server.
 */

/** What every server start needs to know about this run. */
export interface RunEnv {
  /** Temporary directory of this run (removed at the end). */
  tmp: string;
  /** bench/apps: the hello applications in each language. */
  appsDir: string;
  /** Generated static files (1k.bin, 1m.bin). */
  filesDir: string;
  /** The repository root (for bin/junction). */
  root: string;
  /** taskset CPU list for servers, or undefined when not pinning. */
  serverCpus?: string;
  /** taskset CPU list for wrk, or undefined when not pinning. */
  loadCpus?: string;
}

/** A server listening on 127.0.0.1:port; stop() ends it and everything it started. */
export interface Running {
  port: number;
  /** The pid whose process tree is the server (for memory). */
  pid: number;
  /** Roots of other process trees that serve with it (php-fpm behind nginx): their CPU time counts too. */
  also?: number[];
  stop(): Promise<void>;
}
