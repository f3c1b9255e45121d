/**
 * `junction: main` — the supervisor (spec/applications.md §1, DESIGN.md "Processes").
 *
 * Main does only what needs privilege or must survive crashes: it creates the
 * control socket and the listener sockets and hands their descriptors over,
 * spawns the controller, the router and every application process, stores
 * the configuration, owns the error log, and reacts to signals:
 *   TERM/INT  fast exit          QUIT  graceful exit (in-flight requests finish)
 *   HUP       ignored            USR1  reopen log files
 * A controller or router that dies is started again; a restarted router gets
 * the current configuration from the controller. There are as many routers as
 * `settings.listen_threads` asks (routers.ts), all on the same listener sockets.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Channel, withHandle } from '../ipc/channel.ts';
import { createLogger, type Logger } from '../runtime/log.ts';
import type { Options } from '../runtime/options.ts';
import { JUNCTION_VERSION, UNIT_VERSION } from '../runtime/version.ts';
import { parseListenerName } from '../config/address.ts';
import { discoverModules, type ModuleInfo } from '../apps/discovery.ts';
import type { AppSpawnSpec } from '../apps/types.ts';
import { ChannelRendezvous, spawnApp } from './spawn.ts';
import { LogFile } from './logfile.ts';
import { resolveIdentity } from '../runtime/privileges.ts';
import { bindAddress, unixSocketInUse, type RawHandle } from './sockets.ts';
import { loadConfigText, prepareStateDir, storeConfig } from './state.ts';
import { RouterGroup, type RouterSlot } from './routers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const CONTROLLER_ENTRY = path.join(here, '..', 'controller', 'process.ts');
const ROUTER_ENTRY = path.join(here, '..', 'router', 'process.ts');

/** Settings passed to the controller and router processes (env JUNCTION_SETTINGS). */
export interface ChildSettings {
  statedir: string;
  tmpdir: string;
  control: string;
  modules: ModuleInfo[];
  /** `--no-daemon` given: application `stdout`/`stderr` options are ignored, as in Unit. */
  noDaemon: boolean;
  /** `--user`/`--group` for applications that set none; only when main runs as root. */
  user?: string;
  group?: string;
  /** Router processes only: which router this is (0 owns the applications) and the socket router 0 serves them on. */
  router?: { index: number; gateway: string };
  /** Main's rendezvous socket for application connection channels (ChannelRendezvous). */
  channels?: string;
}

interface Role {
  name: 'controller' | 'router';
  /** Routers: 0 for the primary. */
  index?: number;
  entry: string;
  child?: ChildProcess;
  channel?: Channel;
  ready?: Promise<void>;
  readyResolve?: () => void;
  starts: number;
}

export class Main {
  readonly #o: Options;
  readonly #logFile: LogFile;
  readonly log: Logger;
  readonly #argv: string[];
  #modules: ModuleInfo[] = [];
  #runDir = '';
  /** The routers' unprivileged identity when main runs as root (owner of the sockets they connect to). */
  #routerOwner: { uid: number; gid: number } | undefined;
  #rendezvous?: ChannelRendezvous;
  #control?: RawHandle;
  #controlPath?: string;
  readonly #listeners = new Map<string, RawHandle>();
  /** The routers holding each listener socket: it is closed when the last one releases it. */
  readonly #holders = new Map<string, Set<Role>>();
  readonly #apps = new Map<number, ChildProcess>();
  readonly #controller: Role = { name: 'controller', entry: CONTROLLER_ENTRY, starts: 0 };
  readonly #routers = new RouterGroup(ROUTER_ENTRY, { launch: (slot) => this.#startRole(slot) });
  #exiting = false;
  #onListening?: () => void;

  constructor(o: Options, argv: string[]) {
    this.#o = o;
    this.#argv = argv;
    this.#logFile = new LogFile(o.log, !o.daemon);
    this.log = createLogger((line) => this.#logFile.write(line));
  }

  /**
   * Start everything. Resolves once the control socket accepts requests (the
   * initial configuration has been applied). Throws with a message for stderr
   * when startup is impossible (socket in use, unwritable paths).
   */
  async start(onListening?: () => void): Promise<void> {
    this.#onListening = onListening;
    const o = this.#o;
    prepareStateDir(o.statedir);
    await this.#openControlSocket();
    this.#logFile.open();
    this.log.info(`unit ${UNIT_VERSION} started`);
    this.log.info(`junction ${JUNCTION_VERSION} started, Node.js ${process.version}`);
    fs.mkdirSync(path.dirname(o.pid), { recursive: true, mode: 0o755 });
    fs.writeFileSync(o.pid, `${process.pid}\n`, { mode: 0o644 });
    this.#runDir = fs.mkdtempSync(path.join(o.tmpdir, 'junction-'));
    fs.chmodSync(this.#runDir, 0o700);
    if (process.getuid?.() !== 0) {
      this.log.warn('Unit is running unprivileged, then it cannot use arbitrary user and group.');
    } else {
      // The routers run as --user (runtime/privileges.ts): the run directory, where they
      // reach application sockets and make the gateway's, is theirs.
      this.#routerOwner = resolveIdentity(o.user, o.group);
      fs.chownSync(this.#runDir, this.#routerOwner.uid, this.#routerOwner.gid);
    }
    try {
      this.#rendezvous = await ChannelRendezvous.open(path.join(this.#runDir, 'channels.sock'), this.#routerOwner);
    } catch (e) {
      this.log.warn(`connection hand-off disabled: ${(e as Error).message}`);
    }
    process.title = `junction: main v${JUNCTION_VERSION} [${this.#argv.join(' ')}]`;
    this.#installSignals();
    this.#modules = await discoverModules();
    for (const m of this.#modules) this.log.notice(`module: ${m.type} ${m.version} "${m.lib}"`);
    this.#startRole(this.#controller);
    this.#routers.start();
  }

  async #openControlSocket(): Promise<void> {
    const addr = this.#o.control;
    const a = parseListenerName(addr);
    if (!a) throw new Error(`invalid control address "${addr}"`);
    if (a.kind === 'unix' && !a.abstract) {
      const p = a.path;
      fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
      if (await unixSocketInUse(p)) throw new Error(`connect("${p}") failed: socket already in use`);
      try { fs.unlinkSync(`${p}.tmp`); } catch { /* absent */ }
      const h = bindAddress(`unix:${p}.tmp`, this.#o.controlMode);
      if (this.#o.controlUser || this.#o.controlGroup) this.#chownControl(`${p}.tmp`);
      fs.renameSync(`${p}.tmp`, p);
      this.#controlPath = p;
      this.#control = h;
    } else {
      this.#control = bindAddress(addr);
    }
  }

  #chownControl(file: string): void {
    const id = (flag: string, name?: string): number => {
      if (!name) return -1;
      if (/^\d+$/.test(name)) return Number(name);
      const out = spawnSyncText('id', [flag, name]);
      return out === null ? -1 : Number(out);
    };
    const uid = id('-u', this.#o.controlUser);
    const gid = this.#o.controlGroup ? groupId(this.#o.controlGroup) : -1;
    try { fs.chownSync(file, uid, gid); } catch (e) { this.log.alert(`chown("${file}") failed: ${(e as Error).message}`); }
  }

  #childSettings(role?: Role): ChildSettings {
    const root = process.getuid?.() === 0;
    return {
      statedir: this.#o.statedir,
      tmpdir: this.#o.tmpdir,
      control: this.#o.control,
      modules: this.#modules,
      noDaemon: !this.#o.daemon,
      user: root ? this.#o.user : undefined,
      group: root ? this.#o.group : undefined,
      channels: this.#rendezvous?.path,
      router: role?.name === 'router' ? { index: role.index ?? 0, gateway: path.join(this.#runDir, 'router-apps.sock') } : undefined,
    };
  }

  #startRole(role: Role): void {
    role.starts++;
    role.ready = new Promise((resolve) => { role.readyResolve = resolve; });
    const child = spawn(process.execPath, [...process.execArgv, role.entry], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, JUNCTION_SETTINGS: JSON.stringify(this.#childSettings(role)) },
    });
    role.child = child;
    this.#forwardOutput(child);
    const ch = new Channel(child);
    role.channel = ch;
    ch.handle('ready', () => role.readyResolve?.());
    if (role.name === 'router') this.#routerHandlers(ch, role);
    else this.#controllerHandlers(ch);
    child.on('exit', (code, signal) => this.#roleExited(role, child, code, signal));
  }

  #forwardOutput(child: ChildProcess): void {
    for (const s of [child.stdout, child.stderr]) {
      if (!s) continue;
      const [push, flush] = this.#logFile.lineWriter();
      s.on('data', push);
      s.on('end', flush);
    }
  }

  #roleExited(role: Role, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (signal) this.log.alert(`process ${child.pid} exited on signal ${signalNumber(signal)}`);
    else this.log.notice(`process ${child.pid} exited with code ${code}`);
    if (role.child !== child) return;
    role.child = undefined;
    role.channel = undefined;
    if (this.#exiting) return;
    if (role.name === 'router') {
      for (const held of this.#holders.values()) held.delete(role);
      if (!this.#routers.exited(role as RouterSlot)) return;
      // The primary's application pools died with it: stop their processes.
      if (role.index === 0) for (const app of this.#apps.values()) app.kill('SIGKILL');
      this.#startRole(role);
      void role.ready!.then(() => this.#controller.channel?.notify('router-restarted'));
    } else {
      this.#startRole(role);
    }
  }

  #routerHandlers(ch: Channel, role: Role): void {
    ch.handle('listen', async ({ address }: { address: string }) => {
      let h = this.#listeners.get(address);
      if (!h) {
        try {
          h = await this.#bindListener(address);
        } catch (e) {
          this.log.alert((e as Error).message);
          throw e;
        }
        this.#listeners.set(address, h);
      }
      let held = this.#holders.get(address);
      if (held === undefined) this.#holders.set(address, held = new Set());
      held.add(role);
      return withHandle({}, h);
    });
    ch.handle('release', ({ address }: { address: string }) => {
      const held = this.#holders.get(address);
      held?.delete(role);
      if (held !== undefined && held.size > 0) return;
      this.#holders.delete(address);
      const h = this.#listeners.get(address);
      if (h) { this.#listeners.delete(address); h.close(); }
    });
    ch.handle('spawn', (spec: AppSpawnSpec) => this.#spawnApp(spec));
    ch.handle('kill', ({ pid, signal }: { pid: number; signal?: NodeJS.Signals }) => {
      this.#apps.get(pid)?.kill(signal ?? 'SIGTERM');
    });
  }

  /**
   * Bind a listener socket. A Unix socket file left behind by a process that
   * was killed outright (nothing accepts on it any more) is replaced instead
   * of failing the whole configuration.
   */
  async #bindListener(address: string): Promise<RawHandle> {
    try {
      return bindAddress(address);
    } catch (e) {
      const a = parseListenerName(address);
      if (a?.kind !== 'unix' || a.abstract || !fs.existsSync(a.path) || await unixSocketInUse(a.path)) throw e;
      if (!fs.statSync(a.path).isSocket()) throw e;
      this.log.notice(`removing the stale socket file "${a.path}"`);
      fs.unlinkSync(a.path);
      return bindAddress(address);
    }
  }

  async #spawnApp(spec: AppSpawnSpec): Promise<{ pid: number; socket: string }> {
    const router = this.#routers.primary?.child;
    const channel = spec.channel !== undefined ? await this.#rendezvous?.take(spec.channel) : undefined;
    const { child, pid, socket } = await spawnApp(spec, {
      runDir: this.#runDir,
      socketOwner: this.#routerOwner,
      log: this.log,
      output: (c) => this.#forwardOutput(c),
      channel,
    });
    this.#apps.set(pid, child);
    const report = (code: number | null, signal: NodeJS.Signals | null) => {
      this.#apps.delete(pid);
      if (signal) this.log.alert(`app process ${pid} exited on signal ${signalNumber(signal)}`);
      else this.log.notice(`app process ${pid} exited with code ${code}`);
      try { fs.unlinkSync(socket); } catch { /* already gone */ }
      const primary = this.#routers.primary;
      if (primary?.child === router) primary?.channel?.notify('app-exit', { pid, code, signal });
    };
    if (child.exitCode !== null || child.signalCode !== null) report(child.exitCode, child.signalCode);
    else child.once('exit', report);
    return { pid, socket };
  }

  #controllerHandlers(ch: Channel): void {
    ch.handle('control-socket', () => withHandle({}, this.#control));
    ch.handle('listening', () => {
      const cb = this.#onListening;
      this.#onListening = undefined;
      cb?.();
    });
    ch.handle('apply', (data: { config: Record<string, unknown> }) => this.#routers.apply(data));
    ch.handle('status', () => this.#routers.status());
    ch.handle('restart', (data: unknown) => this.#routers.primaryRequest('restart', data));
    ch.handle('persist', ({ json }: { json: string }) => { storeConfig(this.#o.statedir, json); });
    ch.handle('stored-config', () => {
      const b = loadConfigText(this.#o.statedir);
      return b === null ? null : b.toString('latin1');
    });
  }

  #installSignals(): void {
    process.on('SIGTERM', () => void this.stop(false));
    process.on('SIGINT', () => void this.stop(false));
    process.on('SIGQUIT', () => void this.stop(true));
    process.on('SIGHUP', () => this.log.notice('signal signo:1 (SIGHUP) received, ignored'));
    process.on('SIGUSR1', () => this.#rotate());
  }

  #rotate(): void {
    this.log.notice('signal 10 (SIGUSR1) received, log files rotation');
    try {
      this.#logFile.open();
    } catch (e) {
      this.log.alert(`open("${this.#logFile.path}") failed: ${(e as Error).message}`);
    }
    this.#routers.notifyAll('reopen');
  }

  /**
   * Shut down. graceful: the router stops accepting and lets in-flight requests
   * finish, applications are asked to stop; otherwise children are told to exit
   * at once. Cleans up the pid file, the control socket and Unix listener files.
   */
  async stop(graceful: boolean): Promise<never> {
    if (this.#exiting) { if (!graceful) hardExit(this); return new Promise(() => {}); }
    this.#exiting = true;
    this.#routers.stopping();
    if (graceful) await this.#routers.quit();
    const kids = [this.#controller.child, ...this.#routers.children()].filter((c): c is ChildProcess => Boolean(c));
    for (const c of kids) c.kill('SIGTERM');
    for (const a of this.#apps.values()) a.kill('SIGTERM');
    await waitExit([...kids, ...this.#apps.values()], 5000);
    this.cleanup();
    process.exit(0);
  }

  /** Remove what this process created on disk. Safe to call more than once. */
  cleanup(): void {
    for (const h of this.#listeners.values()) { try { h.close(); } catch { /* closed */ } }
    this.#listeners.clear();
    if (this.#control) { try { this.#control.close(); } catch { /* closed */ } this.#control = undefined; }
    this.#rendezvous?.close();
    this.#rendezvous = undefined;
    if (this.#controlPath) { try { fs.unlinkSync(this.#controlPath); } catch { /* gone */ } }
    try { fs.unlinkSync(this.#o.pid); } catch { /* gone */ }
    if (this.#runDir) { try { fs.rmSync(this.#runDir, { recursive: true, force: true }); } catch { /* gone */ } }
  }
}

function hardExit(m: Main): never {
  m.cleanup();
  process.exit(0);
}

/** Wait until every process has exited; SIGKILL what is left after `ms`. */
function waitExit(children: ChildProcess[], ms: number): Promise<void> {
  const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
  if (alive.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    let left = alive.length;
    const timer = setTimeout(() => { for (const c of alive) c.kill('SIGKILL'); }, ms);
    for (const c of alive) {
      c.once('exit', () => { if (--left === 0) { clearTimeout(timer); resolve(); } });
    }
  });
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGTERM: 15 };
function signalNumber(s: string): number | string {
  return SIGNALS[s] ?? s;
}

function spawnSyncText(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const out = spawnSyncText('getent', ['group', name]);
  return out ? Number(out.split(':')[2]) : -1;
}
