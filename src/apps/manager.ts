/**
 * The application manager of the router process (AppManagerLike): one entry
 * per configured application generation, each with its process pool; config
 * transactions; restart; status; shutdown (spec/applications.md §2.3, §2.6,
 * §2.7, §6.1).
 *
 * Generations are compared by the serialised JSON of each application object,
 * as Unit does: identical → the running entry (and its processes) is reused;
 * changed or new → a new entry whose initial processes start in prepare();
 * removed or replaced → drained, then stopped, after commit.
 */
import type {
  AppHandoff, AppHost, AppManagerLike, AppRequest, AppStatus, AppTarget, AppTransaction, AppUpgrade,
} from './types.ts';
import type { Logger } from '../runtime/log.ts';
import type { ModuleInfo } from './discovery.ts';
import { describeApp, type AppLaunch, type LaunchContext } from './launch.ts';
import { Pool, type PoolEnv, type Proc } from './pool.ts';

export interface AppManagerOptions {
  /** Available language runtimes (discoverModules()). */
  modules: ModuleInfo[];
  /** The environment applications inherit; default process.env. */
  env?: Record<string, string | undefined>;
  /** Default working directory of applications; default process.cwd(). */
  cwd?: string;
  /** `--no-daemon`: `stdout`/`stderr` options are ignored. */
  noDaemon?: boolean;
  /** `--user`/`--group`: credentials of applications that set none (applied by main when root). */
  user?: string;
  group?: string;
  /** Grace period between SIGTERM and SIGKILL when stopping a process, ms; default 5000. */
  killTimeout?: number;
}

/** A resolved `pass` to an application (and target). */
class Target implements AppTarget {
  readonly entry: AppEntry;
  readonly index: number;
  constructor(entry: AppEntry, index: number) {
    this.entry = entry;
    this.index = index;
  }
  serve(r: AppRequest): void {
    this.entry.pool.submit(r, this.index);
  }
}

/**
 * Targets that take Upgrade (WebSocket) requests: HTTP apps get them passed
 * through; app-protocol apps get a WebSocket (ASGI) or a plain request (WSGI).
 */
class HttpTarget extends Target {
  upgrade(u: AppUpgrade): void {
    this.entry.pool.submit(u as unknown as AppRequest, this.index, u);
  }

  /** A whole client connection for a Node app's process (transport/handoff.ts). */
  handoff(h: AppHandoff): boolean {
    return this.entry.pool.handoff(h);
  }

  get wholeConnections(): boolean {
    return this.entry.launch.handoff === true;
  }
}

/** One generation of one application: its JSON, launch description, current pool and targets. */
class AppEntry {
  readonly name: string;
  readonly json: string;
  readonly launch: AppLaunch;
  pool: Pool;
  readonly #targets = new Map<string, Target>();
  readonly #default: Target;

  constructor(name: string, json: string, launch: AppLaunch, pool: Pool) {
    this.name = name;
    this.json = json;
    this.launch = launch;
    this.pool = pool;
    const T = launch.transport === 'http' || launch.transport === 'appproto' ? HttpTarget : Target;
    launch.targets.forEach((t, i) => this.#targets.set(t, new T(this, i)));
    // A pass without a target uses the first one (Unit).
    this.#default = new T(this, 0);
  }

  target(name?: string): AppTarget | undefined {
    if (name === undefined) return this.#default;
    return this.#targets.get(name);
  }
}

class Transaction implements AppTransaction {
  readonly #manager: AppManager;
  readonly #next: Map<string, AppEntry>;
  readonly #created: AppEntry[];
  #done = false;

  constructor(manager: AppManager, next: Map<string, AppEntry>, created: AppEntry[]) {
    this.#manager = manager;
    this.#next = next;
    this.#created = created;
  }

  target(name: string, target?: string): AppTarget | undefined {
    return this.#next.get(name)?.target(target);
  }

  commit(): void {
    if (this.#done) return;
    this.#done = true;
    this.#manager.install(this.#next);
  }

  abort(): void {
    if (this.#done) return;
    this.#done = true;
    for (const e of this.#created) e.pool.shutdown(false);
  }
}

export class AppManager implements AppManagerLike {
  readonly #log: Logger;
  readonly #ctx: LaunchContext;
  readonly #killTimeout: number;
  #current = new Map<string, AppEntry>();
  readonly #byPid = new Map<number, Proc>();
  /** Every pool that may still have processes (current, draining, starting). */
  readonly #pools = new Set<Pool>();
  readonly #goneWaiters: (() => void)[] = [];
  readonly #poolEnv: PoolEnv;

  /**
   * @param host main's process services (spawn/kill over IPC)
   * @param log the router's error log
   * @param options available modules (required) and launch defaults
   */
  constructor(host: AppHost, log: Logger, options: AppManagerOptions) {
    this.#log = log;
    this.#ctx = {
      modules: options.modules, env: options.env, cwd: options.cwd, noDaemon: options.noDaemon,
      user: options.user, group: options.group,
    };
    this.#killTimeout = options.killTimeout ?? 5000;
    this.#poolEnv = {
      host,
      log,
      killTimeout: this.#killTimeout,
      track: (pid, p) => this.#byPid.set(pid, p),
      untrack: (pid) => { this.#byPid.delete(pid); },
      gone: (pool) => {
        this.#pools.delete(pool);
        if (this.#pools.size === 0) for (const w of this.#goneWaiters.splice(0)) w();
      },
    };
  }

  #newPool(name: string, launch: AppLaunch): Pool {
    const pool = new Pool(name, launch, this.#poolEnv);
    this.#pools.add(pool);
    return pool;
  }

  /**
   * Prepare the application set `applications` (the `/config/applications`
   * object): reuse unchanged generations, create the others and start their
   * initial processes (`spare`; `processes: N` → N), one at a time per app.
   * Rejects — after stopping whatever it started — when an application cannot
   * be described or its initial processes fail to start; the current set keeps
   * serving and the reconfiguration fails (§6.1, 500).
   */
  async prepare(applications: Record<string, unknown>): Promise<AppTransaction> {
    const next = new Map<string, AppEntry>();
    const created: AppEntry[] = [];
    try {
      for (const [name, conf] of Object.entries(applications ?? {})) {
        const json = JSON.stringify(conf);
        const cur = this.#current.get(name);
        if (cur && cur.json === json) {
          next.set(name, cur);
          continue;
        }
        const launch = describeApp(name, conf as Record<string, unknown>, this.#ctx);
        const entry = new AppEntry(name, json, launch, this.#newPool(name, launch));
        created.push(entry);
        next.set(name, entry);
      }
      await Promise.all(created.map((e) => e.pool.startInitial().catch((err: Error) => {
        throw new Error(`failed to start application "${e.name}"`, { cause: err });
      })));
    } catch (err) {
      for (const e of created) e.pool.shutdown(false);
      if (!(err instanceof Error && err.cause)) this.#log.alert((err as Error).message);
      throw err;
    }
    return new Transaction(this, next, created);
  }

  /** @internal Transaction.commit(): make `next` current; drain what it replaces or removes. */
  install(next: Map<string, AppEntry>): void {
    for (const [name, entry] of this.#current) {
      if (next.get(name) !== entry) entry.pool.retire();
    }
    this.#current = next;
  }

  target(name: string, target?: string): AppTarget | undefined {
    return this.#current.get(name)?.target(target);
  }

  /** Counters of the current applications (§5 `/status` shape). */
  status(): Record<string, AppStatus> {
    const out: Record<string, AppStatus> = {};
    for (const [name, e] of this.#current) out[name] = e.pool.status();
    return out;
  }

  /**
   * GET /control/applications/NAME/restart (§2.6): a fresh pool takes over
   * queued and new requests and starts its spare processes (not awaited); the
   * old processes finish their in-flight requests and stop. Rejects when the
   * application does not exist.
   */
  async restart(name: string): Promise<void> {
    const entry = this.#current.get(name);
    if (!entry) throw new Error(`application "${name}" does not exist`);
    const old = entry.pool;
    const fresh = this.#newPool(name, entry.launch);
    entry.pool = fresh;
    old.retire(fresh);
    fresh.fill();
  }

  processExited(pid: number, _code: number | null, signal: string | null): void {
    const p = this.#byPid.get(pid);
    if (p) p.pool.exited(p, signal);
  }

  /**
   * Stop every process. Graceful: in-flight requests finish first (queued
   * ones get 503); otherwise SIGTERM now. SIGKILL follows after the grace
   * period. Resolves when all processes exited, or at the latest a grace
   * period after the kill when main stopped reporting exits.
   */
  async shutdown(graceful: boolean): Promise<void> {
    const pools = [...this.#pools];
    if (pools.length === 0) return;
    const all = new Promise<void>((resolve) => this.#goneWaiters.push(resolve));
    for (const p of pools) p.shutdown(graceful);
    if (this.#pools.size === 0) return;
    if (graceful) {
      await all;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise<void>((r) => { timer = setTimeout(r, this.#killTimeout * 2); })]);
    clearTimeout(timer);
  }
}
