/**
 * The `php` application type (spec/applications.md §3.3, §4.4): Debian's
 * `php-cgi` serving FastCGI, one request at a time per process, with Unit's
 * script selection and `$_SERVER` done here, in the router, per request.
 *
 * Launch. Main hands every application process a listening Unix socket as
 * fd 3; php-cgi serves FastCGI on the listening socket it finds on fd 0
 * (FCGI_LISTENSOCK_FILENO), so the spawn goes through `/bin/sh`, which moves
 * fd 3 to fd 0 and execs php-cgi:
 *
 *   /bin/sh -c 'unset LISTEN_FDS …; exec "$0" "$@" 0<&3 3<&-' /usr/bin/php-cgi [-c FILE] [-d NAME=VALUE]…
 *   env: PHP_FCGI_CHILDREN=0          (no php-cgi children: Junction owns the pool)
 *        PHP_FCGI_MAX_REQUESTS=N      (`limits.requests`, 0 = unlimited; php-cgi's own default is 500)
 *
 * ini options. php-cgi takes `-c` (the php.ini to load instead of the default
 * one; the conf.d scan directory still applies) and `-d name=value` (applied
 * as if written in php.ini, before any request). The FastCGI parameters
 * PHP_VALUE / PHP_ADMIN_VALUE are php-fpm's: php-cgi ignores them (they only
 * show up in `$_SERVER`). So `options.admin` and `options.user` both become
 * `-d` arguments, admin first so a `user` value for the same name wins as in
 * Unit. Known difference: php-cgi cannot lock a value, so an `admin` value of
 * a directive that is changeable at run time (PHP_INI_ALL, e.g.
 * `memory_limit`) can still be changed by `ini_set()`; PHP_INI_SYSTEM-only
 * directives (`disable_functions`, `disable_classes`, …) work from either
 * list, as in Unit. Values go through PHP's ini parser (`E_ALL & ~E_NOTICE`
 * is evaluated). Unknown directive names are logged at `[error]` as Unit
 * does and dropped.
 *
 * `$_SERVER` differs from Unit's in what php-cgi adds on its own: the process
 * environment, `FCGI_ROLE`, and `PHP_SELF`, which php-cgi derives as
 * SCRIPT_NAME + PATH_INFO (the same value Unit computes).
 *
 * Requests. A process runs one request at a time. Once the pool has all its
 * processes and every one is busy, each is also given up to WAITING more
 * requests, which wait in its socket (PhpConnection.slots) — but none behind a
 * request that has already run SLOW_REQUEST ms, and none with
 * `limits.timeout`, whose timer starts when a process takes a request. Script
 * files are checked as Unit does (404/403 by errno), and a script that opened
 * is trusted for a second before it is checked again.
 */
import { execFile } from 'node:child_process';
import { open, realpath, stat } from 'node:fs/promises';
import { accessSync, constants } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { getSystemErrorMessage } from 'node:util';
import type { AppHost, AppRequest, AppSpawnSpec } from './types.ts';
import type { AppConnection, Exchange } from './exchange.ts';
import {
  FastCgiConnection, ParamsEncoder, encodePairs, type FastCgiExchange, type FastCgiHooks, type RequestHead,
} from './transport/fastcgi.ts';
import { formatLogLine } from '../runtime/log.ts';

/** One script target: the app object itself, or one `targets` member. */
export interface PhpTargetConfig {
  root: string;
  script?: string;
  index?: string;
}

/** The members of a `php` application object this module reads (validated elsewhere). */
export interface PhpAppConfig {
  type: string;
  root?: string;
  script?: string;
  index?: string;
  targets?: Record<string, PhpTargetConfig>;
  options?: {
    file?: string;
    admin?: Record<string, string>;
    user?: Record<string, string>;
  };
  working_directory?: string;
  environment?: Record<string, string>;
  user?: string;
  group?: string;
  stdout?: string;
  stderr?: string;
  limits?: { timeout?: number; requests?: number; shm?: number };
}

export interface PhpAppOptions {
  /** The php-cgi to run (default: `php-cgi` on PATH, else /usr/bin/php-cgi). */
  phpCgi?: string;
  /** Environment the application inherits (default: this process's), before `environment`. */
  env?: Record<string, string | undefined>;
  /** Sink for formatted error-log lines (default: this process's stderr). */
  writeLog?: (line: string) => void;
  /** Directory `working_directory` and relative paths resolve against, and the default cwd (default: this process's cwd; Unit: main's). */
  baseDir?: string;
}

/** Requests that may wait at a busy process behind the one it runs (PhpApp.pipeline). */
const WAITING = 2;
/**
 * A process whose request has run this long (ms, wall clock) is given no more
 * to wait behind it. Well above what a busy machine's scheduling adds to a fast
 * request, so that the waiting requests stay on when CPU time is scarce.
 */
const SLOW_REQUEST = 50;

/** `SERVER_SOFTWARE` of every request. */
export const SERVER_SOFTWARE = 'Unit/1.35.0';

/** The shell step that puts main's listening socket (fd 3) on php-cgi's fd 0. */
export const PHP_CGI_EXEC = 'unset LISTEN_FDS LISTEN_PID LISTEN_FDNAMES JUNCTION_READY_FD; exec "$0" "$@" 0<&3 3<&-';

const DEFAULT_PHP_CGI = '/usr/bin/php-cgi';
/** Variables of Junction's own processes that must not reach php-cgi. */
const PRIVATE_ENV = new Set(['NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'NODE_UNIQUE_ID', 'JUNCTION_SETTINGS',
  'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'JUNCTION_READY_FD']);
/** Longest path `stat` may be asked about (Linux PATH_MAX, terminating NUL included). */
const PATH_MAX = 4096;

/** A byte string (one char per byte) of a configuration string (UTF-16 → UTF-8 bytes). */
function bytes(s: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'utf8').toString('latin1');
}

/** A file-system path (Buffer) of a byte string. */
function fsPath(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/**
 * Locate php-cgi: the first `php-cgi` on `PATH` that is executable, else
 * /usr/bin/php-cgi when present. Synchronous (configuration time only).
 * @returns the absolute path, or undefined when there is none.
 */
export function findPhpCgi(path = process.env.PATH ?? ''): string | undefined {
  const dirs = path.split(':').filter((d) => isAbsolute(d));
  for (const file of [...dirs.map((d) => join(d, 'php-cgi')), DEFAULT_PHP_CGI]) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch { /* next */ }
  }
  return undefined;
}

/**
 * The PHP version of a php-cgi (`php-cgi -v`, first line `PHP 8.2.7 (cgi-fcgi) …`),
 * for module discovery (spec §5: `php` module, version, lib).
 * @returns e.g. `8.2.7`, or undefined when it cannot be run.
 */
export function phpCgiVersion(phpCgi: string): Promise<string | undefined> {
  return new Promise((done) => {
    execFile(phpCgi, ['-n', '-v'], { timeout: 10_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, (err, stdout) => {
      const m = /^PHP (\d+\.\d+\.\d+)/.exec(String(stdout));
      done(!err && m ? m[1] : undefined);
    });
  });
}

/**
 * php-cgi's arguments for an application: `-c <options.file>` (resolved
 * against `cwd`), then `-d name=value` for each `options.admin`, then each
 * `options.user` member, skipping the names in `skip`.
 */
export function phpCgiArguments(conf: PhpAppConfig, cwd: string, skip: ReadonlySet<string> = new Set()): string[] {
  const args: string[] = [];
  const o = conf.options;
  if (o?.file !== undefined) args.push('-c', resolve(cwd, o.file));
  for (const list of [o?.admin, o?.user]) {
    if (!list) continue;
    for (const [name, value] of Object.entries(list)) {
      if (!skip.has(name)) args.push('-d', `${name}=${value}`);
    }
  }
  return args;
}

/**
 * The ini directive names among `names` that this php-cgi does not know
 * (with the same `-c` file and extensions), found by running php-cgi once in
 * CGI mode. Unit logs `setting PHP option "name: value" failed` for those.
 * @returns [] when php-cgi cannot be run (the process start will report it).
 */
export function unknownIniDirectives(phpCgi: string, names: string[], args: string[], cwd: string, env: Record<string, string>): Promise<string[]> {
  if (names.length === 0) return Promise.resolve([]);
  const script = `<?php foreach (json_decode(${phpString(JSON.stringify(names))}) as $n) if (ini_get($n) === false) echo $n, "\\n";`;
  return new Promise((done) => {
    const child = execFile(phpCgi, ['-q', ...args], { cwd, env, timeout: 30_000 }, (err, stdout) => {
      done(err ? [] : String(stdout).split('\n').filter((n) => n !== ''));
    });
    child.stdin?.end(script);
  });
}

function phpString(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** A target with its paths resolved (byte strings). */
interface ResolvedTarget {
  /** realpath of root, no trailing `/`. */
  root: string;
  index: string;
  /** `script` mode: realpath of the script and its name under root. */
  scriptFilename?: string;
  scriptName?: string;
}

/**
 * Resolve one target as Unit does at process start: `root` through realpath
 * (trailing `/` trimmed); `script` as realpath(root + '/' + script), which must
 * stay under root.
 * @throws Error with Unit's alert text: `root realpath(X) failed (2: No such
 *   file or directory)`, `script realpath(X) failed (…)`, `script is not under php root`.
 */
export async function resolveTarget(t: PhpTargetConfig, cwd: string): Promise<ResolvedTarget> {
  const rootPath = resolve(cwd, t.root);
  let root: string;
  try {
    root = bytes(await realpath(rootPath));
  } catch (e) {
    throw new Error(`root realpath(${t.root}) failed ${errnoText(e)}`);
  }
  while (root.endsWith('/')) root = root.slice(0, -1);
  if (t.script === undefined) return { root, index: bytes(t.index ?? 'index.php') };
  const joined = `${root}/${bytes(t.script).replace(/^\/+/, '')}`;
  let file: string;
  try {
    file = (await realpath(fsPath(joined), { encoding: 'buffer' })).toString('latin1');
  } catch (e) {
    throw new Error(`script realpath(${joined}) failed ${errnoText(e)}`);
  }
  if (!file.startsWith(root)) throw new Error('script is not under php root');
  return { root, index: '', scriptFilename: file, scriptName: file.slice(root.length) };
}

/** `(2: No such file or directory)`, the way Unit prints an errno. */
function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (typeof err.errno !== 'number') return `(${err.code ?? err.message})`;
  let text: string;
  try { text = getSystemErrorMessage(err.errno); } catch { text = err.code ?? 'Unknown error'; }
  return `(${Math.abs(err.errno)}: ${text.charAt(0).toUpperCase()}${text.slice(1)})`;
}

/** A started php-cgi process and the connection to it. */
export interface PhpProcess {
  pid: number;
  socket: string;
  connection: FastCgiConnection;
}

/**
 * One `php` application generation: what to spawn and how to serve requests.
 * Create it once per generation (configuration time); then per process:
 *
 *   const { pid, socket } = await host.spawn(php.spawnSpec());
 *   const conn = await PhpConnection.connect(php, pid, socket, { onLost });  // the pool's AppConnection
 *   conn.dispatch(ex);                                                        // per request, one at a time
 *
 * or, without the pool: `const p = await php.start(host)` and
 * `php.target(name)?.serve(r, p.connection, hooks)`.
 */
export class PhpApp {
  readonly name: string;
  readonly conf: PhpAppConfig;
  readonly cwd: string;
  /** `limits.requests` → PHP_FCGI_MAX_REQUESTS (0 = unlimited). */
  readonly maxRequests: number;
  /**
   * Whether a busy process is given its next request before it is done with
   * the current one (FastCgiOptions.pipeline): not with `limits.timeout`,
   * whose timer must not run while a request waits behind another.
   */
  readonly pipeline: boolean;
  readonly #options: PhpAppOptions;
  readonly #targets = new Map<string, PhpTarget>();
  /** The targets in `targets` order (the pool's target index). */
  readonly #list: PhpTarget[] = [];
  readonly #first: PhpTarget;
  #phpCgi: string | undefined;
  #skip: Set<string> = new Set();
  #checked = false;

  constructor(name: string, conf: PhpAppConfig, options: PhpAppOptions = {}) {
    this.name = name;
    this.conf = conf;
    const base = options.baseDir ?? process.cwd();
    this.cwd = conf.working_directory !== undefined ? resolve(base, conf.working_directory) : base;
    this.maxRequests = conf.limits?.requests ?? 0;
    this.pipeline = !(conf.limits?.timeout);
    this.#options = options;
    this.#phpCgi = options.phpCgi ?? findPhpCgi(this.#baseEnv().PATH);
    const entries: Array<[string, PhpTargetConfig]> = conf.targets
      ? Object.entries(conf.targets)
      : [['', { root: conf.root ?? '', script: conf.script, index: conf.index }]];
    for (const [tname, t] of entries) {
      const target = new PhpTarget(this, t);
      this.#targets.set(tname, target);
      this.#list.push(target);
    }
    this.#first = this.#list[0];
  }

  /**
   * The target `pass: "applications/NAME/TARGET"` names; without a name (or
   * for an app without `targets`) the first one, as Unit.
   * @returns undefined for an unknown target name.
   */
  target(name?: string): PhpTarget | undefined {
    if (name === undefined || name === '') return this.#first;
    return this.conf.targets ? this.#targets.get(name) : undefined;
  }

  /** The target at `index` in `targets` order (0 for an app without targets), as the pool numbers them. */
  targetAt(index: number): PhpTarget | undefined {
    return this.#list[index];
  }

  /**
   * Work done before each process start (Unit does it in the prototype):
   * find php-cgi, resolve every target's root/script, and (once) check the
   * ini directive names, logging `[error] setting PHP option "n: v" failed`
   * for unknown ones.
   * @throws Error with a log-ready message (`root realpath(X) failed (…)`,
   *   `script is not under php root`, `php-cgi not found`); the process must
   *   then count as failed to start.
   */
  async prepare(): Promise<void> {
    this.#phpCgi ??= findPhpCgi(this.#baseEnv().PATH);
    if (!this.#phpCgi) throw new Error('php-cgi not found (install Debian\'s php-cgi package)');
    for (const t of this.#targets.values()) await t.resolve(this.cwd);
    if (!this.#checked) {
      this.#checked = true;
      const o = this.conf.options;
      const all: Array<[string, string]> = [...Object.entries(o?.admin ?? {}), ...Object.entries(o?.user ?? {})];
      if (all.length) {
        const unknown = new Set(await unknownIniDirectives(this.#phpCgi, all.map(([n]) => n),
          o?.file !== undefined ? ['-c', resolve(this.cwd, o.file)] : [], this.cwd, this.#baseEnv()));
        for (const [n, v] of all) {
          if (unknown.has(n)) this.#log('error', `setting PHP option "${n}: ${v}" failed`);
        }
        this.#skip = unknown;
      }
    }
  }

  /**
   * What main spawns for one process: `/bin/sh` moving
   * the listening socket from fd 3 to fd 0, then php-cgi with the ini
   * arguments; env = inherited + `environment` + PHP_FCGI_CHILDREN=0 and
   * PHP_FCGI_MAX_REQUESTS. `waitReady` is false: readiness is checked by
   * connect() with a FastCGI round trip. Usable before prepare(); after it,
   * unknown ini directives are left out.
   */
  spawnSpec(): AppSpawnSpec {
    const phpCgi = this.#phpCgi ?? DEFAULT_PHP_CGI;
    const c = this.conf;
    const env: Record<string, string> = {
      ...this.#baseEnv(),
      PHP_FCGI_CHILDREN: '0',
      PHP_FCGI_MAX_REQUESTS: String(this.maxRequests),
    };
    const spec: AppSpawnSpec = {
      app: this.name,
      executable: '/bin/sh',
      arguments: ['-c', PHP_CGI_EXEC, phpCgi, ...phpCgiArguments(c, this.cwd, this.#skip)],
      env,
      cwd: this.cwd,
      waitReady: false,
    };
    if (c.user !== undefined) spec.user = c.user;
    if (c.group !== undefined) spec.group = c.group;
    if (c.stdout !== undefined) spec.stdout = c.stdout;
    if (c.stderr !== undefined) spec.stderr = c.stderr;
    return spec;
  }

  /**
   * Wait for a spawned php-cgi to answer on `socket` and open the kept
   * connection to it.
   * @throws Error (log-ready) when the process does not serve FastCGI there
   *   (exec failed, php-cgi exited at startup).
   */
  connect(pid: number, socket: string): Promise<FastCgiConnection> {
    return FastCgiConnection.open(socket, {
      pid, maxRequests: this.maxRequests, writeLog: this.#options.writeLog, pipeline: this.pipeline ? WAITING : 0,
    });
  }

  /**
   * prepare() + host.spawn(spawnSpec()) + connect(): one ready process.
   * A process that spawned but never answers FastCGI is sent SIGKILL.
   * @throws Error (log-ready) on any failure.
   */
  async start(host: AppHost): Promise<PhpProcess> {
    await this.prepare();
    const { pid, socket } = await host.spawn(this.spawnSpec());
    try {
      return { pid, socket, connection: await this.connect(pid, socket) };
    } catch (e) {
      host.kill(pid, 'SIGKILL');
      throw e;
    }
  }

  #baseEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.#options.env ?? process.env)) {
      if (v !== undefined && !PRIVATE_ENV.has(k)) env[k] = v;
    }
    return Object.assign(env, this.conf.environment ?? {});
  }

  #log(level: 'error' | 'alert', message: string): void {
    const line = formatLogLine(level, message);
    if (this.#options.writeLog) this.#options.writeLog(line);
    else process.stderr.write(line);
  }
}

/**
 * One request on a PhpConnection (its Exchange.state): the FastCGI hooks wired
 * to the pool's Exchange (activity → `limits.timeout`, fail, finish), and what
 * abandon() needs. One object per request, no closures.
 */
class PhpRequest implements FastCgiHooks {
  readonly ex: Exchange;
  fcgi: FastCgiExchange | undefined = undefined;
  abandoned = false;

  constructor(ex: Exchange) {
    this.ex = ex;
  }

  onActivity(): void {
    this.ex.activity();
  }

  onDone(): void {
    this.ex.finish();
  }

  fail(status: number): void {
    this.ex.fail(status);
  }

  retry(): boolean {
    return this.ex.requeue();
  }

  /** The request reached php-cgi (or was answered without it: undefined). */
  started(x: FastCgiExchange | undefined): void {
    this.fcgi = x;
    if (this.abandoned) x?.abandon();
  }
}

/**
 * The pool's view of one php-cgi process (AppConnection, src/apps/exchange.ts):
 * one request at a time (`slots` = 1), script selection per request, the
 * FastCGI exchange wired to the pool's Exchange (activity → `limits.timeout`,
 * fail, finish).
 *
 *   const c = await PhpConnection.connect(php, pid, socket, { onLost });   // per process, after host.spawn(php.spawnSpec())
 *   c.dispatch(ex);                                                         // per request
 */
export class PhpConnection implements AppConnection {
  readonly app: PhpApp;
  readonly fcgi: FastCgiConnection;
  /**
   * Requests given to one php-cgi process at once: 1, or 1 + WAITING with
   * PhpApp.pipeline (the others wait in the socket, in order, until the
   * process is done with the one before; they count for no extra capacity in
   * the pool's rules, and see canTakeMore()).
   */
  readonly slots: number;

  constructor(app: PhpApp, fcgi: FastCgiConnection) {
    this.app = app;
    this.fcgi = fcgi;
    this.slots = app.pipeline ? 1 + WAITING : 1;
  }

  /**
   * Finish a process start: PhpApp.prepare() (roots, scripts, ini names —
   * Unit does this in the prototype), then wait for php-cgi to answer
   * FastCGI on `socket` and keep a connection to it.
   * @param onLost called once when the connection is gone for good (the
   *   process exited, reached `limits.requests`, or close() was called).
   * @throws Error with a log-ready message; the caller kills `pid` and counts
   *   the start as failed.
   */
  static async connect(app: PhpApp, pid: number, socket: string, opts: { onLost?: () => void } = {}): Promise<PhpConnection> {
    await app.prepare();
    const fcgi = await app.connect(pid, socket);
    if (opts.onLost) fcgi.onClose(opts.onLost);
    return new PhpConnection(app, fcgi);
  }

  dispatch(ex: Exchange): void {
    const target = this.app.targetAt(ex.target);
    if (ex.upgrade || !target) {
      // php-cgi cannot take over a connection (no WebSocket).
      ex.fail(ex.upgrade ? 503 : 500);
      ex.finish();
      return;
    }
    if (!this.fcgi.accepting) {
      // Nothing of the request reached this process: another one may take it.
      if (!ex.requeue()) {
        ex.fail(503);
        ex.finish();
      }
      return;
    }
    const request = new PhpRequest(ex);
    ex.state = request;
    const x = target.serve(ex.r, this.fcgi, request);
    if (x instanceof Promise) void x.then((y) => request.started(y));
    else request.started(x);
  }

  /**
   * Whether a request may be given to this process now, beyond the one it runs
   * (the pool asks before it makes a request wait here): not when it is full,
   * nor behind a request that has already run for SLOW_REQUEST ms — a request
   * known to be slow would hold up the ones waiting behind it while another
   * process may be free sooner.
   */
  canTakeMore(): boolean {
    return this.fcgi.accepting && this.fcgi.runningFor < SLOW_REQUEST;
  }

  abandon(ex: Exchange): void {
    const request = ex.state as PhpRequest | undefined;
    if (!request) return;
    request.abandoned = true;
    request.fcgi?.abandon();
  }

  /** Drop the connection; a request in flight fails (503, or a closed client connection) and finishes. */
  close(): void {
    this.fcgi.destroy();
  }
}

/**
 * Why a request did not reach php-cgi: the response Unit sends instead (500:
 * the request fields do not fit in FastCGI records).
 */
type Refusal = { status: 301; location: string } | { status: 403 | 404 } | { status: 500 | 503 };

/** The outcome of script selection: the request's FastCGI records (and its body when read whole), or a refusal. */
export type ScriptSelection = { params: RequestHead; body?: Buffer } | Refusal;

/** How long a script file that opened is taken to still open without asking again, ms. */
const SCRIPT_CHECK_TTL = 1000;
/** Entries of that cache per target before it starts over. */
const SCRIPT_CHECK_MAX = 4096;

/** Parameters that are the same for every request of a target, encoded once. */
interface ConstantParams {
  /** SERVER_SOFTWARE and SERVER_PROTOCOL, for HTTP/1.1 and HTTP/1.0. */
  http11: Buffer;
  http10: Buffer;
  /** `script` mode: SCRIPT_NAME, SCRIPT_FILENAME, DOCUMENT_ROOT. */
  script: Buffer | undefined;
  /** DOCUMENT_ROOT. */
  root: Buffer;
}

/** The encoder every request is built in (requests are encoded one at a time, synchronously). */
const encoder = new ParamsEncoder();

/** `HTTP_` names of request field names (upper case, `-` → `_`), cached. */
const httpKeys = new Map<string, string>();

function httpKey(name: string): string {
  let key = httpKeys.get(name);
  if (key === undefined) {
    key = `HTTP_${name.toUpperCase().replaceAll('-', '_')}`;
    if (httpKeys.size >= 4096) httpKeys.clear();
    httpKeys.set(name, key);
  }
  return key;
}

/** Scratch list of the `HTTP_` names of one request's fields. */
const fieldKeys: string[] = [];

/** One resolved script target: serves requests on a given process. */
export class PhpTarget {
  readonly app: PhpApp;
  readonly conf: PhpTargetConfig;
  #resolved: ResolvedTarget | undefined;
  #constants: ConstantParams | undefined;
  /** Script files that opened lately → until when that is trusted (Date.now() ms). */
  #openable = new Map<string, number>();

  constructor(app: PhpApp, conf: PhpTargetConfig) {
    this.app = app;
    this.conf = conf;
  }

  /** (Re)resolve root and script; see resolveTarget(). */
  async resolve(cwd: string): Promise<void> {
    const t = await resolveTarget(this.conf, cwd);
    this.#resolved = t;
    this.#constants = {
      http11: encodePairs(['SERVER_SOFTWARE', SERVER_SOFTWARE, 'SERVER_PROTOCOL', 'HTTP/1.1']),
      http10: encodePairs(['SERVER_SOFTWARE', SERVER_SOFTWARE, 'SERVER_PROTOCOL', 'HTTP/1.0']),
      script: t.scriptFilename !== undefined
        ? encodePairs(['SCRIPT_NAME', t.scriptName!, 'SCRIPT_FILENAME', t.scriptFilename, 'DOCUMENT_ROOT', t.root])
        : undefined,
      root: encodePairs(['DOCUMENT_ROOT', t.root]),
    };
    this.#openable.clear();
  }

  /** The resolved paths (after PhpApp.prepare()). */
  get resolved(): ResolvedTarget | undefined {
    return this.#resolved;
  }

  /**
   * Serve `r` on the php-cgi process behind `conn` (which must be
   * `available`): select the script (§4.4), answer 301/403/404/503 without
   * the process when Unit does, else run it over FastCGI. The process is
   * busy from this call until `hooks.onDone` (script selection may be async
   * and does not mark `conn` busy meanwhile): give it no other request
   * meanwhile. `hooks.onDone` is called exactly once, when the process is
   * free again (right after a refusal). A body with Content-Length is
   * streamed to php-cgi; a chunked one is read whole first (php-cgi needs
   * CONTENT_LENGTH), as Unit's router does.
   * @returns the exchange (for abandon() on `limits.timeout`), or undefined
   *   when the process was not used; a promise of it when the selection had
   *   to wait (a file check, a chunked body).
   */
  serve(r: AppRequest, conn: FastCgiConnection, hooks: FastCgiHooks): FastCgiExchange | undefined | Promise<FastCgiExchange | undefined> {
    let sel: ScriptSelection | Promise<ScriptSelection>;
    try {
      sel = this.select(r);
    } catch {
      sel = { status: 503 };
    }
    if (sel instanceof Promise) {
      return sel.then((s) => this.#run(r, conn, hooks, s), () => this.#run(r, conn, hooks, { status: 503 }));
    }
    return this.#run(r, conn, hooks, sel);
  }

  #run(r: AppRequest, conn: FastCgiConnection, hooks: FastCgiHooks, sel: ScriptSelection): FastCgiExchange | undefined {
    if ('status' in sel) {
      refuse(r, sel, hooks);
      hooks.onDone(true);
      return undefined;
    }
    if (!conn.accepting) {
      // The process went away while the script was chosen: another one may take the request.
      if (!hooks.retry?.()) {
        failWith(r, hooks, 503);
        hooks.onDone(false);
      }
      return undefined;
    }
    return conn.request(r, sel.params, hooks, sel.body);
  }

  /**
   * Script selection and `$_SERVER` of spec §4.4 for request `r`.
   * Without `script`, with the decoded path P and root R:
   *   P contains `.php/` → script up to `.php`, PATH_INFO the rest;
   *   P ends with `/` → P + index;
   *   P not ending in `.php` → stat(R+P): directory → 301 to
   *     `http[s]://SERVER_NAME[:port]P/[?query]`; ENOENT/ENOTDIR/ENAMETOOLONG → 404;
   *     EACCES/ELOOP/ENFILE → 403; anything else (an existing file) → 503;
   *   else P.
   * Then the script must open for reading: 404/403 by errno as above. A
   * script that opened is trusted to open for the next second without asking
   * again (php-cgi answers 404 itself if it went away meanwhile). With
   * `script`, the file resolved at process start is run as Unit does,
   * without a check.
   * @returns the selection, synchronously when nothing had to be waited for.
   */
  select(r: AppRequest): ScriptSelection | Promise<ScriptSelection> {
    const t = this.#resolved;
    if (!t) return { status: 503 };
    if (t.scriptFilename !== undefined) return this.#selected(r, t.root, t.scriptName!, t.scriptFilename, undefined);
    let scriptName: string;
    let pathInfo: string | undefined;
    const p = r.path;
    const at = p.indexOf('.php/');
    if (at >= 0) {
      scriptName = p.slice(0, at + 4);
      pathInfo = p.slice(at + 4);
    } else if (p.endsWith('/')) {
      scriptName = p + t.index;
    } else if (!p.endsWith('.php')) {
      return this.#notScript(r, t.root + p);
    } else {
      scriptName = p;
    }
    const scriptFilename = t.root + scriptName;
    const until = this.#openable.get(scriptFilename);
    if (until !== undefined && until > Date.now()) return this.#selected(r, t.root, scriptName, scriptFilename, pathInfo);
    return this.#check(r, t.root, scriptName, scriptFilename, pathInfo);
  }

  /** Open the script once (it must be readable), then select. */
  async #check(r: AppRequest, root: string, scriptName: string, scriptFilename: string, pathInfo: string | undefined): Promise<ScriptSelection> {
    try {
      const fh = await open(fsPath(scriptFilename), 'r');
      await fh.close();
    } catch (e) {
      this.#openable.delete(scriptFilename);
      return fsRefusal(e);
    }
    if (this.#openable.size >= SCRIPT_CHECK_MAX) this.#openable.clear();
    this.#openable.set(scriptFilename, Date.now() + SCRIPT_CHECK_TTL);
    return this.#selected(r, root, scriptName, scriptFilename, pathInfo);
  }

  /** The request's records for the chosen script; a chunked body is read whole first. */
  #selected(r: AppRequest, root: string, scriptName: string, scriptFilename: string,
    pathInfo: string | undefined): ScriptSelection | Promise<ScriptSelection> {
    const h = r.rawHeaders;
    let contentLength: string | undefined;
    let chunked = false;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i].length;
      if (n === 14 && contentLength === undefined && h[i].toLowerCase() === 'content-length') contentLength = h[i + 1];
      else if (n === 17 && h[i].toLowerCase() === 'transfer-encoding') chunked = true;
    }
    if (contentLength === undefined && chunked) {
      // A chunked body is read whole: php-cgi reads exactly CONTENT_LENGTH bytes.
      return readBody(r).then((data) => this.#encode(r, root, scriptName, scriptFilename, pathInfo, data));
    }
    const streamed = contentLength !== undefined && contentLength !== '0';
    return this.#encode(r, root, scriptName, scriptFilename, pathInfo, streamed ? undefined : NO_BODY);
  }

  /**
   * The FastCGI records: `$_SERVER` as Unit fills it (§4.4), in Unit's order.
   * `body`: the body read whole (chunked; its length becomes CONTENT_LENGTH),
   * NO_BODY for none, undefined when it is streamed after the records.
   */
  #encode(r: AppRequest, root: string, scriptName: string, scriptFilename: string,
    pathInfo: string | undefined, body: Buffer | undefined): ScriptSelection {
    const c = this.#constants!;
    const req = r.req;
    const readWhole = body !== undefined && body !== NO_BODY;
    try {
      const enc = encoder.start();
      const version = req.httpVersion;
      if (version === '1.1') enc.block(c.http11);
      else if (version === '1.0') enc.block(c.http10);
      else enc.pair('SERVER_SOFTWARE', SERVER_SOFTWARE).pair('SERVER_PROTOCOL', `HTTP/${version}`);
      if (pathInfo !== undefined && pathInfo !== '') enc.pair('PATH_INFO', pathInfo);
      if (c.script !== undefined) enc.block(c.script);
      else enc.pair('SCRIPT_NAME', scriptName).pair('SCRIPT_FILENAME', scriptFilename).block(c.root);
      enc.pair('REQUEST_METHOD', req.method ?? 'GET')
        .pair('REQUEST_URI', r.target)
        .pair('QUERY_STRING', r.query)
        .pair('REMOTE_ADDR', r.remoteAddr)
        .pair('SERVER_ADDR', r.localAddr)
        .pair('SERVER_NAME', r.serverName)
        .pair('SERVER_PORT', r.localPort);
      if (r.tls) enc.pair('HTTPS', 'on');
      // Fields: HTTP_ + upper case, `-` → `_`, repeats joined with ", " at the first one's place.
      const h = r.rawHeaders;
      const n = h.length >> 1;
      let contentType: string | undefined;
      let contentLength: string | undefined;
      let repeated = false;
      for (let j = 0; j < n; j++) {
        const name = h[2 * j];
        let key = httpKey(name);
        if (key === 'HTTP_CONTENT_TYPE') {
          if (contentType === undefined && name.toLowerCase() === 'content-type') contentType = h[2 * j + 1];
        } else if (key === 'HTTP_CONTENT_LENGTH') {
          if (contentLength === undefined && name.toLowerCase() === 'content-length') contentLength = h[2 * j + 1];
        } else if (readWhole && key === 'HTTP_TRANSFER_ENCODING' && name.toLowerCase() === 'transfer-encoding') {
          key = '';
        }
        fieldKeys[j] = key;
        if (!repeated && key !== '') {
          if (n > 32) repeated = true;
          else for (let m = 0; m < j; m++) if (fieldKeys[m] === key) { repeated = true; break; }
        }
      }
      if (!repeated) {
        for (let j = 0; j < n; j++) if (fieldKeys[j] !== '') enc.pair(fieldKeys[j], h[2 * j + 1]);
      } else {
        const values = new Map<string, string>();
        for (let j = 0; j < n; j++) {
          const key = fieldKeys[j];
          if (key === '') continue;
          const v = values.get(key);
          values.set(key, v === undefined ? h[2 * j + 1] : `${v}, ${h[2 * j + 1]}`);
        }
        for (const [key, value] of values) enc.pair(key, value);
      }
      fieldKeys.length = 0;
      if (readWhole) {
        // A chunked body read whole: Unit's router hides Transfer-Encoding and adds Content-Length.
        contentLength = String(body.length);
        enc.pair('HTTP_CONTENT_LENGTH', contentLength);
      }
      if (contentLength !== undefined) enc.pair('CONTENT_LENGTH', contentLength);
      if (contentType !== undefined) enc.pair('CONTENT_TYPE', contentType);
      return { params: enc.finish(body === NO_BODY), body: readWhole ? body : undefined };
    } catch {
      // A field too large for one FastCGI record (Unit: 500).
      fieldKeys.length = 0;
      return { status: 500 };
    }
  }

  async #notScript(r: AppRequest, file: string): Promise<Refusal> {
    if (file.length + 1 > PATH_MAX) return { status: 503 };
    let isDir: boolean;
    try {
      isDir = (await stat(fsPath(file))).isDirectory();
    } catch (e) {
      return fsRefusal(e);
    }
    if (!isDir) return { status: 503 };
    const port = r.localPort;
    const showPort = port !== '' && !(r.tls ? port === '443' : port === '80');
    const location = `${r.tls ? 'https' : 'http'}://${r.serverName}${showPort ? `:${port}` : ''}${r.path}/${r.query !== '' ? `?${r.query}` : ''}`;
    return { status: 301, location };
  }
}

const NO_BODY = Buffer.alloc(0);

/** Read a request body whole. @throws Error when the client goes away first. */
function readBody(r: AppRequest): Promise<Buffer> {
  const req = r.req;
  return new Promise((done, fail) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.once('end', () => done(Buffer.concat(parts)));
    req.once('error', fail);
    req.once('close', () => { if (!req.complete) fail(new Error('request body incomplete')); });
  });
}

/** 404/403 for the errno of a failed stat/open, 503 for anything else (Unit's nxt_php_handle_fs_err). */
function fsRefusal(e: unknown): Refusal {
  switch ((e as NodeJS.ErrnoException).code) {
    case 'ENOENT': case 'ENOTDIR': case 'ENAMETOOLONG': return { status: 404 };
    case 'EACCES': case 'ELOOP': case 'ENFILE': return { status: 403 };
    default: return { status: 503 };
  }
}

/** Answer with the router's error page through `hooks.fail` (the pool's), else `r.fail`. */
function failWith(r: AppRequest, hooks: FastCgiHooks, status: number): void {
  if (hooks.fail) hooks.fail(status);
  else r.fail(status);
}

/** Send a refusal: 301/403/404 are the app's own responses (empty body); 500/503 are the router's errors. */
function refuse(r: AppRequest, s: Refusal, hooks: FastCgiHooks): void {
  const res = r.res;
  if (s.status >= 500 || res.headersSent) {
    failWith(r, hooks, s.status >= 500 ? s.status : 503);
    return;
  }
  if (s.status === 301) res.writeHead(301, ['Location', s.location]);
  else res.writeHead(s.status);
  res.end();
}
