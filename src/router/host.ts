/**
 * What the router process gives the Router: main's services over IPC.
 */
import type { Logger } from '../runtime/log.ts';
import type { AppHost } from '../apps/types.ts';

export interface RouterHost {
  log: Logger;
  /**
   * The socket for listener `address` (a Unit listener name such as `*:8080`,
   * `127.0.0.1:80`, `[::1]:80`, `unix:/path`), bound by main and not yet
   * listening: pass it to `net.Server.listen(handle)`. The same address asked
   * again returns the same socket (main keeps it until release()).
   * Rejects with Unit's message, e.g. `bind("127.0.0.1:80") failed (98: Address already in use)`.
   */
  listen(address: string): Promise<unknown>;
  /**
   * The listener is gone from this router's configuration: main closes its
   * socket (and unlinks a Unix path) once no router holds it any more.
   */
  release(address: string): void;
  /** Process services for the application manager. */
  apps: AppHost;
  /** `--tmpdir`: default of settings.http.body_temp_path. */
  tmpdir: string;
}
