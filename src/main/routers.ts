/**
 * The router processes (`settings.listen_threads`, spec/control-api.md; Unit
 * runs that many router threads, Junction that many router processes).
 *
 * Every router serves every listener: main binds each listener socket once
 * and hands the same socket to each of them, and the kernel spreads the
 * connections. Applications are not duplicated: router 0 (the primary) owns
 * the application processes and their pools; the others forward requests for
 * applications to it over a local Unix socket (router/app-gateway.ts). Static
 * files, `return` and `proxy` are served by whichever router accepted the
 * connection.
 *
 * A configuration is applied to all routers in two phases: the primary
 * prepares first (its applications start), then the others (given the
 * primary's application targets); when every one is ready they all switch;
 * when any fails, the prepared ones drop it and all keep the old one. The
 * number of routers follows the configuration: `listen_threads` (default: the
 * CPUs available) once there is a listener; one while there is none. A router
 * that dies is started again and gets the current configuration.
 */
import os from 'node:os';
import type { ChildProcess } from 'node:child_process';
import type { Channel } from '../ipc/channel.ts';

/** One router process slot; main's role record for it. */
export interface RouterSlot {
  name: 'router';
  entry: string;
  /** 0 for the primary. */
  index: number;
  child?: ChildProcess;
  channel?: Channel;
  ready?: Promise<void>;
  readyResolve?: () => void;
  starts: number;
  /** Being stopped because the configuration wants fewer routers: not restarted. */
  retiring?: boolean;
}

/** What the group needs from main. */
export interface RouterLauncher {
  /** Start the process of `slot` (sets child, channel, ready). */
  launch(slot: RouterSlot): void;
}

/** The controller's apply message, passed on. */
interface ApplyData { config: Record<string, unknown>; [k: string]: unknown }

interface Counts { accepted: number; active: number; idle: number; closed: number }
interface RouterStatusReply { connections: Counts; requests: { total: number }; applications?: unknown }

/**
 * The channel of `slot` once its process is ready; a process that dies
 * before is waited for again as it restarts (a few times).
 * @throws Error when it does not come up.
 */
async function channelOf(slot: RouterSlot): Promise<Channel> {
  for (let tries = 0; tries < 4; tries++) {
    const child = slot.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      if (slot.retiring) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    let onExit: (() => void) | undefined;
    const exited = new Promise<void>((resolve) => { onExit = resolve; child.once('exit', onExit); });
    try {
      await Promise.race([slot.ready, exited]);
    } finally {
      child.removeListener('exit', onExit!);
    }
    if (slot.child === child && slot.channel !== undefined && child.exitCode === null && child.signalCode === null) return slot.channel;
  }
  throw new Error('router is not running');
}

/** How many routers a configuration asks for. */
export function routerCount(config: Record<string, unknown> | undefined): number {
  const listeners = config?.listeners;
  if (listeners === null || typeof listeners !== 'object' || Object.keys(listeners).length === 0) return 1;
  const n = (config?.settings as Record<string, unknown> | undefined)?.listen_threads;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 1) return n;
  return Math.max(1, os.availableParallelism());
}

/** The router processes of one daemon. */
export class RouterGroup {
  readonly #launcher: RouterLauncher;
  readonly #entry: string;
  readonly #slots: RouterSlot[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #exiting = false;

  constructor(entry: string, launcher: RouterLauncher) {
    this.#entry = entry;
    this.#launcher = launcher;
  }

  /** Start the primary router. */
  start(): void {
    this.#grow(1);
  }

  /** The primary router (owner of the applications). */
  get primary(): RouterSlot | undefined {
    return this.#slots[0];
  }

  /** Every running router process. */
  children(): ChildProcess[] {
    return this.#slots.map((s) => s.child).filter((c): c is ChildProcess => c !== undefined);
  }

  /** Start routers up to `n`; returns the slots added. */
  #grow(n: number): RouterSlot[] {
    const added: RouterSlot[] = [];
    while (this.#slots.length < n) {
      const slot: RouterSlot = { name: 'router', entry: this.#entry, index: this.#slots.length, starts: 0 };
      this.#slots.push(slot);
      added.push(slot);
      this.#launcher.launch(slot);
    }
    return added;
  }

  /** Stop the routers of `slots` (gracefully: in-flight requests finish) and forget them. */
  #retire(slots: RouterSlot[]): void {
    for (const s of slots) {
      s.retiring = true;
      const i = this.#slots.indexOf(s);
      if (i >= 0) this.#slots.splice(i, 1);
      const ch = s.channel;
      const child = s.child;
      if (ch === undefined || child === undefined) continue;
      void ch.request('quit', { graceful: true }).catch(() => {}).then(() => child.kill('SIGTERM'));
    }
  }

  /**
   * A router process exited. @returns true when it is to be started again
   * (the caller does, then has the configuration applied again).
   */
  exited(slot: RouterSlot): boolean {
    return !this.#exiting && !slot.retiring && this.#slots.includes(slot);
  }

  /** Apply a configuration to all routers, all or nothing (see the module comment). */
  apply(data: ApplyData): Promise<unknown> {
    const run = this.#queue.then(() => this.#apply(data));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #apply(data: ApplyData): Promise<void> {
    const n = routerCount(data.config);
    const added = this.#grow(n);
    const active = this.#slots.slice(0, n);
    const prepared: Channel[] = [];
    try {
      const primary = await channelOf(active[0]);
      const { data: ready } = await primary.request<{ apps?: unknown }>('prepare', data);
      prepared.push(primary);
      const others = await Promise.allSettled(active.slice(1).map(async (s) => {
        const ch = await channelOf(s);
        await ch.request('prepare', { ...data, apps: ready?.apps });
        prepared.push(ch);
      }));
      const failed = others.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    } catch (e) {
      for (const ch of prepared) ch.notify('abort');
      this.#retire(added);
      throw e;
    }
    await Promise.all(prepared.map((ch) => ch.request('commit').catch(() => {})));
    this.#retire(this.#slots.slice(n));
  }

  /** `/status` of all routers: connection and request counters summed, applications from the primary. */
  async status(): Promise<RouterStatusReply> {
    const replies = await Promise.all(this.#slots.map(async (s) => (await (await channelOf(s)).request<RouterStatusReply>('status')).data)
      .map((p) => p.catch(() => null)));
    const first = replies[0];
    if (!first) throw new Error('router is not running');
    const out: RouterStatusReply = {
      connections: { accepted: 0, active: 0, idle: 0, closed: 0 },
      requests: { total: 0 },
      applications: first.applications,
    };
    for (const r of replies) {
      if (!r) continue;
      for (const k of ['accepted', 'active', 'idle', 'closed'] as const) out.connections[k] += r.connections[k];
      out.requests.total += r.requests.total;
    }
    return out;
  }

  /** A request answered by the primary router. */
  async primaryRequest(type: string, data: unknown): Promise<unknown> {
    const s = this.#slots[0];
    if (s === undefined) throw new Error('router is not running');
    return (await (await channelOf(s)).request(type, data)).data;
  }

  /** A notification to every router. */
  notifyAll(type: string, data?: unknown): void {
    for (const s of this.#slots) s.channel?.notify(type, data);
  }

  /** Graceful quit of every router (resolves when all have finished their requests). */
  async quit(): Promise<void> {
    this.#exiting = true;
    await Promise.all(this.#slots.map((s) => s.channel?.request('quit', { graceful: true }).catch(() => {})));
  }

  /** Main is exiting: no restarts. */
  stopping(): void {
    this.#exiting = true;
  }
}
