/**
 * Starting one application process (main's side of AppHost.spawn).
 *
 * The process gets a listening Unix stream socket as fd 3 under the systemd
 * socket-activation convention (`LISTEN_FDS=1`, `LISTEN_PID=<its pid>`), so any
 * program able to serve on an inherited socket runs unmodified; Junction's
 * launchers and the Node preload use the same socket. Main binds the socket
 * (it may be root), hands it over, and closes its own copy: nothing of the
 * data path stays in main.
 */
import { spawn, execFile, type ChildProcess, type StdioOptions } from 'node:child_process';
import { access, chmod, chown, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { constants as fsConstants, unlink as unlinkCb } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { getSystemErrorMessage } from 'node:util';
import type { AppSpawnSpec } from '../apps/types.ts';
import type { Logger } from '../runtime/log.ts';

export interface SpawnOptions {
  /** Directory for the per-process socket files (must exist or be creatable; short path: sun_path is 108 bytes). */
  runDir: string;
  log: Logger;
  /**
   * Called with the new process right after it is created, before anything is
   * awaited: attach the forwarding of its stdout/stderr pipes (those without a
   * `stdout`/`stderr` file) into the error log here, so that the last words of a
   * process that fails before it is ready (an import traceback) are kept too.
   * Without it the pipes are left to the caller, and the output of a process
   * that failed to start is copied to main's stderr.
   */
  output?: (child: ChildProcess) => void;
  /** Owner of the socket file, when main is root and the router is not (mode 0600 either way). */
  socketOwner?: { uid: number; gid: number };
  /**
   * The router's connection channel for this process (ChannelRendezvous.take):
   * it becomes fd 5, Node's IPC channel (`NODE_CHANNEL_FD=5`), and main's copy
   * is closed once the process has it.
   */
  channel?: net.Socket;
}

export interface SpawnedApp {
  child: ChildProcess;
  pid: number;
  /** Path of the listening socket the process serves on. */
  socket: string;
}

/** fd of the readiness pipe inside the application process (the socket is fd 3). */
const READY_FD = 4;
/** fd of the router's connection channel inside the application process. */
const CHANNEL_FD = 5;
/** systemd's convention: LISTEN_PID must be the pid of the process that reads it, known only after fork. */
const EXEC_WITH_LISTEN_PID = 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"';
const SETPRIV = '/usr/bin/setpriv';

let seq = 0;

/**
 * Start the process described by `spec` (spec/applications.md §2.1, §3.1, §8).
 *
 * - `spec.executable` is exec'd as given when absolute, else resolved against
 *   `spec.cwd` — never searched in PATH. argv[0] is that absolute path.
 * - fd 3: a listening Unix socket bound at `<runDir>/<n>.sock` (bound at `.tmp`,
 *   then renamed, so closing main's copy never unlinks the live path); the file
 *   is unlinked when the process exits.
 * - fd 1/2: `spec.stdout`/`spec.stderr` opened for append (an open failure is
 *   logged and the pipe is used instead), else pipes copied to `opts.output`.
 * - `opts.channel`: fd 5 is the router's connection channel for the process
 *   (Node's IPC channel: `NODE_CHANNEL_FD=5`, JSON serialisation).
 * - `spec.waitReady`: fd 4 is a pipe named by `JUNCTION_READY_FD`; resolves on
 *   the first byte written to it. Otherwise resolves once the process is running.
 * - `spec.user`/`spec.group` apply only when main runs as root: through
 *   `setpriv --init-groups` when present (keeps the user's supplementary groups,
 *   as Unit), else numeric uid/gid. A missing `group` means the user's primary group.
 *
 * The exit of a process that never became ready is logged here (`app process N
 * exited with code C` at notice, `… on signal S` at alert), since the caller
 * never sees it; after resolution, logging exits is the caller's. The socket
 * file is unlinked when the process exits.
 *
 * Rejects with a message ready for the error log: `execve(<exe>) failed (2: No
 * such file or directory)`, `chdir(<dir>) failed (…)`, `getpwnam("<user>") failed`,
 * `bind(unix:<path>) failed (…)`, or `"<app>" application failed to start` when
 * the process exits (or closes its readiness pipe) before it is ready.
 */
export async function spawnApp(spec: AppSpawnSpec, opts: SpawnOptions): Promise<SpawnedApp> {
  const cwd = spec.cwd ?? process.cwd();
  const exe = isAbsolute(spec.executable) ? spec.executable : resolve(cwd, spec.executable);
  let creds: Credentials | undefined;
  try {
    await checkDir(cwd);
    await checkExecutable(exe);
    creds = await credentials(spec);
  } catch (e) {
    // Main's copy of the channel: the router sees its end, as for any failed start.
    opts.channel?.destroy();
    throw e;
  }

  const stdoutFd = spec.stdout ? await openOutput(resolve(cwd, spec.stdout), opts.log) : undefined;
  const stderrFd = spec.stderr ? await openOutput(resolve(cwd, spec.stderr), opts.log) : undefined;

  let handle: PipeHandle | undefined;
  let child: ChildProcess;
  let socket: string;
  try {
    ({ handle, path: socket } = await bindSocket(opts.runDir, opts.socketOwner));
    // fd 3: the listening socket.
    const stdio: StdioOptions = ['ignore', stdoutFd?.fd ?? 'pipe', stderrFd?.fd ?? 'pipe', handle.fd];
    const env: Record<string, string> = { ...spec.env, LISTEN_FDS: '1' };
    delete env.LISTEN_PID;
    delete env.LISTEN_FDNAMES;
    delete env.JUNCTION_READY_FD;
    delete env.NODE_CHANNEL_FD;
    delete env.NODE_CHANNEL_SERIALIZATION_MODE;
    if (spec.waitReady) {
      stdio.push('pipe');
      env.JUNCTION_READY_FD = String(READY_FD);
    }
    if (opts.channel) {
      if (stdio.length === READY_FD) stdio.push('ignore');
      stdio.push(opts.channel);
      env.NODE_CHANNEL_FD = String(CHANNEL_FD);
      env.NODE_CHANNEL_SERIALIZATION_MODE = 'json';
    }
    const argv = [exe, ...spec.arguments];
    // The process ends with main even when main is killed outright (SIGKILL),
    // instead of living on as an orphan that holds its socket.
    const setpriv = creds !== undefined && creds.setpriv
      ? [SETPRIV, `--reuid=${creds.uid}`, `--regid=${creds.gid}`, '--init-groups', '--pdeathsig', 'TERM', '--']
      : (await hasSetpriv()) ? [SETPRIV, '--pdeathsig', 'TERM', '--'] : [];
    const shellArgs = ['-c', EXEC_WITH_LISTEN_PID, ...setpriv, ...argv];
    child = spawn('/bin/sh', shellArgs, {
      cwd,
      env,
      stdio,
      uid: creds && !creds.setpriv ? creds.uid : undefined,
      gid: creds && !creds.setpriv ? creds.gid : undefined,
    });
  } catch (e) {
    if (socket!) unlinkCb(socket, () => {});
    throw e;
  } finally {
    // Main's copies: the child has its own after fork (or failed to get one).
    handle?.close();
    opts.channel?.destroy();
    await stdoutFd?.close();
    await stderrFd?.close();
  }

  if (opts.output) opts.output(child);
  const log = opts.log;

  return new Promise<SpawnedApp>((resolvePromise, reject) => {
    let settled = false;
    const ready = child.stdio[READY_FD] as net.Socket | undefined | null;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      ready?.destroy();
      if (err) reject(err);
      else resolvePromise({ child, pid: child.pid!, socket });
    };
    child.on('error', (err) => {
      // Only spawn failures reach here (the shell could not start).
      unlinkCb(socket, () => {});
      settle(new Error(`execve(/bin/sh) failed (${errnoText(err as NodeJS.ErrnoException)})`));
    });
    child.on('exit', (code, signal) => {
      unlinkCb(socket, () => {});
      if (settled) return;
      // The caller never gets this process: its exit line and output are ours to report.
      if (signal) log.alert(`app process ${child.pid} exited on signal ${signalNumber(signal)}`);
      else log.notice(`app process ${child.pid} exited with code ${code}`);
      if (!opts.output) {
        child.stdout?.pipe(process.stderr, { end: false });
        child.stderr?.pipe(process.stderr, { end: false });
      }
      // Let the process's last words (an import traceback) reach the log before the failure line.
      const err = new Error(`"${spec.app}" application failed to start`);
      const pipe = child.stderr;
      if (!pipe || pipe.readableEnded || pipe.destroyed) return settle(err);
      const timer = setTimeout(() => settle(err), 200);
      pipe.once('close', () => { clearTimeout(timer); settle(err); });
    });
    if (ready) {
      ready.once('data', () => settle());
      ready.once('end', () => {
        if (settled) return;
        // EOF without a byte: the process is exiting, or gave up the pipe and can never
        // report; in the latter case end it (its exit settles the promise).
        setTimeout(() => { if (!settled) child.kill('SIGKILL'); }, 1000).unref();
      });
      ready.on('error', () => {});
    } else {
      child.once('spawn', () => settle());
    }
  });
}

interface PipeHandle { fd: number; listen(backlog: number): number; setBlocking(b: boolean): number; close(): void }

/** Bind and listen on a fresh socket path; the handle is in blocking mode, as programs expect of inherited sockets. */
async function bindSocket(runDir: string, owner?: { uid: number; gid: number }): Promise<{ handle: PipeHandle; path: string }> {
  await mkdir(runDir, { recursive: true, mode: 0o755 });
  const path = join(runDir, `${process.pid}.${++seq}.sock`);
  const tmp = `${path}.tmp`;
  await unlink(tmp).catch(() => {});
  const h = (net as unknown as { _createServerHandle(p: string, port: number, at: number, fd: undefined, flags: number): PipeHandle | number })
    ._createServerHandle(tmp, -1, -1, undefined, 0);
  if (typeof h === 'number') throw new Error(`bind(unix:${tmp}) failed (${errnoText({ errno: h } as NodeJS.ErrnoException)})`);
  try {
    await chmod(tmp, 0o600);
    if (owner && process.getuid?.() === 0) await chown(tmp, owner.uid, owner.gid);
    const err = h.listen(511);
    if (err) throw new Error(`listen(unix:${tmp}) failed (${errnoText({ errno: err } as NodeJS.ErrnoException)})`);
    h.setBlocking(true);
    await rename(tmp, path);
  } catch (e) {
    h.close();
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return { handle: h, path };
}

async function checkDir(dir: string): Promise<void> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw Object.assign(new Error('ENOTDIR'), { errno: -20, code: 'ENOTDIR' });
  } catch (e) {
    throw new Error(`chdir(${dir}) failed (${errnoText(e as NodeJS.ErrnoException)})`);
  }
}

async function checkExecutable(exe: string): Promise<void> {
  try {
    const st = await stat(exe);
    if (st.isDirectory()) throw Object.assign(new Error('EACCES'), { errno: -13, code: 'EACCES' });
    await access(exe, fsConstants.X_OK);
  } catch (e) {
    throw new Error(`execve(${exe}) failed (${errnoText(e as NodeJS.ErrnoException)})`);
  }
}

async function openOutput(path: string, log: Logger) {
  try {
    return await open(path, 'a', 0o666);
  } catch (e) {
    log.alert(`open("${path}") failed (${errnoText(e as NodeJS.ErrnoException)})`);
    return undefined;
  }
}

interface Credentials { uid: number; gid: number; setpriv: boolean }

/** Resolve `user`/`group` when privileged; undefined when nothing changes. */
async function credentials(spec: AppSpawnSpec): Promise<Credentials | undefined> {
  if (!spec.user && !spec.group) return undefined;
  if (process.getuid?.() !== 0) return undefined;
  const user = spec.user ?? 'root';
  const pw = await getent('passwd', user);
  if (!pw) throw new Error(`getpwnam("${user}") failed`);
  const uid = Number(pw[2]);
  let gid = Number(pw[3]);
  if (spec.group) {
    const gr = await getent('group', spec.group);
    if (!gr) throw new Error(`getgrnam("${spec.group}") failed`);
    gid = Number(gr[2]);
  }
  return { uid, gid, setpriv: await hasSetpriv() };
}

let setprivPresent: Promise<boolean> | undefined;
/** util-linux's setpriv is there (checked once). */
function hasSetpriv(): Promise<boolean> {
  setprivPresent ??= access(SETPRIV, fsConstants.X_OK).then(() => true, () => false);
  return setprivPresent;
}

/** One `getent` entry split on `:` (keeps NSS sources working, which /etc parsing would not). */
function getent(db: 'passwd' | 'group', key: string): Promise<string[] | undefined> {
  return new Promise((res) => {
    execFile('getent', [db, key], { timeout: 10_000 }, (err, stdout) => {
      const line = String(stdout).split('\n')[0];
      res(err || !line ? undefined : line.split(':'));
    });
  });
}

/** `2: No such file or directory`, as Unit prints errno. */
export function errnoText(e: NodeJS.ErrnoException): string {
  const n = typeof e.errno === 'number' ? e.errno : undefined;
  if (n === undefined) return e.code ?? e.message;
  let text: string;
  try { text = getSystemErrorMessage(n); } catch { text = e.code ?? 'Unknown error'; }
  return `${Math.abs(n)}: ${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

function signalNumber(signal: string): number | string {
  return (osConstants.signals as Record<string, number>)[signal] ?? signal;
}

/**
 * Where the router's connection channels meet application processes
 * (src/apps/transport/handoff.ts): a Unix socket in the run directory. The
 * router connects and writes a token line; the spawn request naming that
 * token gets the connection (take()), which becomes the process's fd 5.
 */
export class ChannelRendezvous {
  readonly path: string;
  readonly #server: net.Server;
  /** Connections that introduced themselves, by token. */
  readonly #arrived = new Map<string, net.Socket>();
  /** take() calls waiting for their token. */
  readonly #waiting = new Map<string, (s: net.Socket) => void>();
  /** Tokens take() gave up on: their connection, should it come, is closed (the router sees the channel end). */
  readonly #abandoned = new Set<string>();

  private constructor(path: string, server: net.Server) {
    this.path = path;
    this.#server = server;
  }

  /** Listen at `path` (mode 0600, owned by `owner` when main is root). */
  static async open(path: string, owner?: { uid: number; gid: number }): Promise<ChannelRendezvous> {
    await unlink(path).catch(() => {});
    const server = net.createServer();
    const r = new ChannelRendezvous(path, server);
    server.on('connection', (s) => r.#introduce(s));
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.removeListener('error', reject); resolve(); });
    });
    await chmod(path, 0o600);
    if (owner && process.getuid?.() === 0) await chown(path, owner.uid, owner.gid);
    return r;
  }

  #introduce(s: net.Socket): void {
    let line = '';
    const timer = setTimeout(() => s.destroy(), 10_000);
    timer.unref();
    const onData = (d: Buffer) => {
      line += d.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) {
        if (line.length > 128) s.destroy();
        return;
      }
      s.removeListener('data', onData);
      s.pause();
      const token = line.slice(0, nl);
      if (this.#abandoned.delete(token)) {
        s.destroy();
        return;
      }
      const waiter = this.#waiting.get(token);
      if (waiter) {
        this.#waiting.delete(token);
        clearTimeout(timer);
        waiter(s);
        return;
      }
      this.#arrived.set(token, s);
      s.once('close', () => { if (this.#arrived.get(token) === s) this.#arrived.delete(token); });
    };
    s.on('data', onData);
    s.on('error', () => {});
    s.once('close', () => clearTimeout(timer));
  }

  /**
   * The connection that introduced itself with `token`, waiting up to `ms`
   * for it; undefined if none came (one that comes later is closed).
   */
  take(token: string, ms = 5000): Promise<net.Socket | undefined> {
    const s = this.#arrived.get(token);
    if (s) {
      this.#arrived.delete(token);
      return Promise.resolve(s);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(token);
        this.#abandoned.add(token);
        resolve(undefined);
      }, ms);
      this.#waiting.set(token, (sock) => { clearTimeout(timer); resolve(sock); });
    });
  }

  close(): void {
    this.#server.close();
    for (const s of this.#arrived.values()) s.destroy();
    this.#arrived.clear();
  }
}
