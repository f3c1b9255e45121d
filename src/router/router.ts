/**
 * The router: owns the listeners and the current routing table
 * (DESIGN.md "router"; spec/router.md, control-api.md §7.3).
 *
 *   apply(config)  compile → prepare apps → get new sockets → swap → commit
 *   prepare(config) the same in two steps: everything up to the swap, then
 *                  commit() or abort() (main applies a configuration to several
 *                  router processes this way: all switch, or none)
 *   status()       connection and request counters (§12)
 *   reopenLogs()   SIGUSR1: reopen the access log
 *   shutdown()     stop accepting; graceful → let in-flight requests finish
 */
import type { RouterHost } from './host.ts';
import type { AppManagerLike, AppTransaction } from '../apps/types.ts';
import { compileTable, type RouterTable } from './table.ts';
import { Listener, leftToPrimary } from './listener.ts';
import { Counters, type Connection, type RouterState } from './connection.ts';
import { logBare } from './http.ts';
import { AccessLogFile, compileAccessLog, accessLogPath, type AccessLog } from './access-log.ts';
import { compileWithJs, createJsRuntime } from './variables.ts';
import type { JsRuntime } from './js.ts';
import { describeTargets, type AppTargetsInfo } from './app-gateway.ts';
import { compileTls, tlsKey, type TlsConfig, type TlsSetup } from './tls.ts';

export interface RouterStatus {
  connections: { accepted: number; active: number; idle: number; closed: number };
  requests: { total: number };
}

/** `settings.js_module` as a list of names. */
function jsModuleNames(settings: unknown): string[] {
  const v = (settings as Record<string, unknown> | undefined)?.js_module;
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A configuration ready to go live: exactly one of commit() or abort() follows. */
export class PreparedConfig {
  private readonly onCommit: () => void;
  private readonly onAbort: () => void;
  private done = false;
  private resolve!: () => void;
  /** Resolves once committed or aborted (the next configuration waits for it). */
  readonly settled: Promise<void>;
  /** The application targets prepared (what the other routers compile against). */
  readonly apps: AppTargetsInfo;

  constructor(apps: AppTargetsInfo, onCommit: () => void, onAbort: () => void) {
    this.apps = apps;
    this.onCommit = onCommit;
    this.onAbort = onAbort;
    this.settled = new Promise((r) => { this.resolve = r; });
  }

  /** Switch to the new configuration. */
  commit(): void {
    if (this.done) return;
    this.done = true;
    try { this.onCommit(); } finally { this.resolve(); }
  }

  /** Drop it: the current configuration stays. */
  abort(): void {
    if (this.done) return;
    this.done = true;
    try { this.onAbort(); } finally { this.resolve(); }
  }
}

export class Router {
  private readonly host: RouterHost;
  private readonly apps: AppManagerLike;
  private readonly state: RouterState;
  private readonly listeners = new Map<string, Listener>();
  private table: RouterTable | null = null;
  private logFile: AccessLogFile | null = null;
  /** The TLS setups of the current table by tlsKey(): kept by a new configuration that has the same. */
  private tlsSetups = new Map<string, TlsSetup>();
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(host: RouterHost, apps: AppManagerLike) {
    this.host = host;
    this.apps = apps;
    this.state = {
      counters: new Counters(),
      connections: new Set<Connection>(),
      log: host.log,
      logBare,
    };
  }

  /**
   * Compile and install a configuration (validated by the controller).
   * All or nothing: on failure nothing changes (the old table keeps serving,
   * new sockets are released, started application processes are stopped).
   * @param jsModules the uploaded JS modules, name → source (`settings.js_module`
   *   names some of them; JS templates run with those as globals)
   * @param certificates the uploaded certificate bundles listeners' `tls`
   *   names, name → PEM text (spec/router.md §10)
   * @throws Error whose message is for the error log; the controller answers 500.
   */
  async apply(config: Record<string, unknown>, jsModules: Readonly<Record<string, string>> = {},
    certificates: Readonly<Record<string, string>> = {}): Promise<void> {
    (await this.prepare(config, jsModules, certificates)).commit();
  }

  /**
   * The first step of apply(): everything that can fail (applications
   * started, listener sockets opened, the table compiled), nothing switched.
   * Further configurations wait until the result is committed or aborted.
   * @throws Error (as apply) after undoing what it did.
   */
  prepare(config: Record<string, unknown>, jsModules: Readonly<Record<string, string>> = {},
    certificates: Readonly<Record<string, string>> = {}): Promise<PreparedConfig> {
    const run = this.queue.then(() => this.prepareNow(config, jsModules, certificates));
    this.queue = run.then((p) => p.settled, () => {});
    return run;
  }

  private async prepareNow(config: Record<string, unknown>, jsModules: Readonly<Record<string, string>>,
    certificates: Readonly<Record<string, string>>): Promise<PreparedConfig> {
    if (this.stopped) throw new Error('the router is shutting down');
    let tx: AppTransaction | null = null;
    let newLog: AccessLogFile | null = null;
    const opened: Listener[] = [];
    try {
      tx = await this.apps.prepare((config.applications ?? {}) as Record<string, unknown>);

      // One JavaScript context per configuration, made when something needs it (§6.3).
      const use = jsModuleNames(config.settings);
      let js: JsRuntime | null = use.length ? createJsRuntime(jsModules, use) : null;
      const runtime = (): JsRuntime => (js ??= createJsRuntime(jsModules, use));

      let file: AccessLogFile | null = null;
      if (config.access_log !== undefined) {
        const path = accessLogPath(config.access_log);
        file = this.logFile;
        if (file === null || file.path !== path) {
          try {
            file = newLog = await AccessLogFile.open(path);
          } catch (e) {
            throw new Error(`open("${path}") failed (${(e as NodeJS.ErrnoException).errno ?? ''}: ${(e as Error).message})`);
          }
        }
      }

      const prepared = tx;
      const logFile: AccessLogFile | null = file;
      // Listeners whose `tls` and bundles did not change keep their contexts and sessions.
      const bundles = { ...certificates };
      const tlsSetups = new Map<string, TlsSetup>();
      const tls = (conf: TlsConfig): TlsSetup => {
        const key = tlsKey(conf, bundles);
        const s = tlsSetups.get(key) ?? this.tlsSetups.get(key) ?? compileTls(conf, bundles);
        tlsSetups.set(key, s);
        return s;
      };
      const { table, accessLog } = compileWithJs(runtime, () => {
        const log: AccessLog | null = logFile !== null ? compileAccessLog(config.access_log, logFile) : null;
        const t = compileTable(config, { tx: prepared, apps: this.apps, tmpdir: this.host.tmpdir, accessLog: log, tls });
        return { table: t, accessLog: log };
      });

      for (const [name, lc] of table.listeners) {
        if (this.listeners.has(name) || leftToPrimary(lc)) continue;
        const handle = await this.host.listen(name);
        const l = new Listener(lc, this.state);
        opened.push(l);
        try {
          await l.start(handle);
        } catch (e) {
          throw new Error(`listen("${name}") failed: ${(e as Error).message}`);
        }
      }
      return new PreparedConfig(
        describeTargets(prepared, (config.applications ?? {}) as Record<string, unknown>),
        () => { this.tlsSetups = tlsSetups; this.switchTo(table, opened, accessLog?.file ?? null, prepared); },
        () => this.undo(opened, newLog, prepared),
      );
    } catch (e) {
      this.undo(opened, newLog, tx);
      throw e;
    }
  }

  /** Everything is ready: switch. */
  private switchTo(table: RouterTable, opened: Listener[], logFile: AccessLogFile | null, tx: AppTransaction): void {
    this.table = table;
    for (const l of opened) this.listeners.set(l.name, l);
    for (const [name, l] of this.listeners) {
      const lc = table.listeners.get(name);
      if (lc !== undefined && !leftToPrimary(lc)) {
        l.update(lc);
      } else {
        l.close();
        this.listeners.delete(name);
        this.host.release(name);
      }
    }
    if (this.logFile !== null && this.logFile !== logFile) this.logFile.close();
    this.logFile = logFile;
    tx.commit();
  }

  /** Release what a prepared configuration opened or started. */
  private undo(opened: Listener[], newLog: AccessLogFile | null, tx: AppTransaction | null): void {
    for (const l of opened) {
      l.close();
      this.host.release(l.name);
    }
    newLog?.close();
    tx?.abort();
  }

  /** Counters for `GET /status` (spec/router.md §12). */
  status(): RouterStatus {
    const c = this.state.counters;
    return {
      connections: {
        accepted: c.accepted,
        active: c.accepted - c.closed - c.idle,
        idle: c.idle,
        closed: c.closed,
      },
      requests: { total: c.requests },
    };
  }

  /** Reopen the access log file (SIGUSR1 log rotation). */
  async reopenLogs(): Promise<void> {
    await this.logFile?.reopen();
  }

  /**
   * Stop accepting connections. Graceful: idle connections close now, busy
   * ones after their current response; resolves when all are closed.
   * Otherwise every connection is closed at once.
   */
  async shutdown(graceful: boolean): Promise<void> {
    this.stopped = true;
    for (const [name, l] of this.listeners) {
      l.close();
      this.host.release(name);
    }
    this.listeners.clear();
    const conns = [...this.state.connections];
    await Promise.all(conns.map((c) => new Promise<void>((resolve) => {
      if (c.socket.destroyed) { resolve(); return; }
      c.socket.once('close', () => resolve());
      if (graceful) c.closeWhenIdle();
      else c.socket.destroy();
    })));
    this.logFile?.close();
    this.logFile = null;
  }
}
