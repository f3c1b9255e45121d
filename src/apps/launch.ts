/**
 * From an application object of the configuration to what it takes to run it:
 * the spawn spec main executes, the transport, the pool parameters
 * (spec/applications.md §2, §3). The object is assumed valid (the validator
 * ran); what cannot be launched still throws, with a log-ready message.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { basename, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppSpawnSpec } from './types.ts';
import { parseType, selectModule, type ModuleInfo } from './discovery.ts';
import { PhpApp, type PhpAppConfig } from './php.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The Node preload every `external` app gets in NODE_OPTIONS. */
export const NODE_PRELOAD = resolve(ROOT, 'launchers/node/preload.cjs');
/** The Python launcher script. */
export const PYTHON_LAUNCHER = resolve(ROOT, 'launchers/python/junction_python.py');

/** Variables of Junction's own processes that must never reach an application. */
const PRIVATE_ENV = ['NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE', 'NODE_UNIQUE_ID', 'JUNCTION_SETTINGS',
  'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'JUNCTION_READY_FD'];

export interface LaunchContext {
  modules: readonly ModuleInfo[];
  /** The environment apps inherit (Junction's own); default process.env. */
  env?: Record<string, string | undefined>;
  /** Default `working_directory` (main's cwd at startup); default process.cwd(). */
  cwd?: string;
  /** `--no-daemon`: `stdout`/`stderr` options are ignored, as Unit does. */
  noDaemon?: boolean;
  /** `--user`/`--group`: credentials of applications without `user`/`group` (honoured by main only as root). */
  user?: string;
  group?: string;
}

/** Pool parameters (§2.3, §2.4); times in milliseconds. */
export interface PoolConfig {
  max: number;
  spare: number;
  idleTimeout: number;
  /** limits.timeout: inactivity of the app once it took a request; 0 = none. */
  timeout: number;
  /** limits.requests: requests per process before it is replaced; 0 = unlimited. */
  requests: number;
}

export interface AppLaunch {
  spec: AppSpawnSpec;
  transport: 'http' | 'appproto' | 'fastcgi';
  /** Requests one process takes at once; Infinity for HTTP apps (they accept what comes). */
  slots: number;
  /** `targets` names in order; empty when the app has none. */
  targets: string[];
  pool: PoolConfig;
  /** `php`: the application generation (script selection, `$_SERVER`, FastCGI connections). */
  php?: PhpApp;
  /**
   * Whole client connections may be handed to its processes (Node apps with a
   * fixed number of processes and no `limits`: transport/handoff.ts).
   */
  handoff?: boolean;
}

type Obj = Record<string, unknown>;

/**
 * Describe application `name` from its configuration object `conf`.
 *
 * - `external`/`go`: `executable` resolved against `working_directory`, never
 *   PATH; `arguments`; Junction's environment with `environment` merged over
 *   it, plus the Node preload in NODE_OPTIONS. Readiness is awaited only when
 *   the program is Node (`node*`, or `/usr/bin/env node*`), which the preload
 *   reports; Unit's `unit-http` loader arguments are dropped for Node.
 * - `python`: the interpreter of the module selected by `type` (§2.2), or
 *   `<home>/bin/python` for a virtualenv (`home` with a `pyvenv.cfg`; otherwise
 *   `home` becomes PYTHONHOME), running launchers/python/junction_python.py
 *   with the options as JSON in JUNCTION_PYTHON_OPTIONS.
 * - `php`: the php-cgi of the module selected by `type`, serving FastCGI on
 *   the socket main hands over (PhpApp.spawnSpec()); one request at a time
 *   per process.
 *
 * Throws Error(`The module to run "<type>" is not found among the available
 * application modules.`) or `application type "<x>" is not supported`.
 */
/**
 * The first `isolation` member that would ask for more than plain process
 * separation (namespaces, rootfs, id maps, cgroups, no_new_privs), or null.
 * Such a request is refused rather than silently ignored: an application that
 * expects a sandbox must not run without one.
 */
export function unsupportedIsolation(isolation: unknown): string | null {
  if (!isolation || typeof isolation !== 'object') return null;
  const iso = isolation as Obj;
  const ns = iso.namespaces as Obj | undefined;
  for (const [k, v] of Object.entries(ns ?? {})) if (v === true) return `namespaces.${k}`;
  for (const k of ['rootfs', 'uidmap', 'gidmap', 'cgroup']) if (iso[k] !== undefined) return k;
  if (iso.new_privs === false) return 'new_privs';
  return null;
}

/**
 * Why Junction cannot run application `name` with the `user`/`group` of its
 * configuration, or null when it can (spec/applications.md §1.1): without
 * root, the applications can only run as Junction's own user, so any other
 * `user` or `group` is refused with Unit's message rather than ignored.
 */
export function credentialsDenied(name: string, conf: Obj): string | null {
  if (process.getuid === undefined || process.getuid() === 0) return null;
  const me = os.userInfo();
  if (typeof conf.user === 'string' && conf.user !== me.username && conf.user !== String(me.uid)) {
    return `cannot set user "${conf.user}" for app "${name}": missing capabilities`;
  }
  if (typeof conf.group === 'string' && conf.group !== String(me.gid) && conf.group !== groupName(me.gid)) {
    return `cannot set group "${conf.group}" for app "${name}": missing capabilities`;
  }
  return null;
}

/** The name of group `gid`, or undefined. */
function groupName(gid: number): string | undefined {
  const r = spawnSync('getent', ['group', String(gid)], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split(':')[0] : undefined;
}

/**
 * Connection hand-off to Node apps (transport/handoff.ts) is on unless the
 * daemon runs with `JUNCTION_HANDOFF=0` in its environment: then every request
 * to a Node app is proxied by the router (docs/external-apps.md).
 */
const HANDOFF = process.env.JUNCTION_HANDOFF !== '0';

export function describeApp(name: string, conf: Obj, ctx: LaunchContext): AppLaunch {
  const type = String(conf.type ?? '');
  const { language } = parseType(type);
  const module = selectModule(type, ctx.modules);
  if (!module) throw new Error(`The module to run "${type}" is not found among the available application modules.`);
  const unsupported = unsupportedIsolation(conf.isolation);
  if (unsupported) throw new Error(`application "${name}": the "isolation" option "${unsupported}" is not supported`);
  const denied = credentialsDenied(name, conf);
  if (denied) throw new Error(denied);
  const cwd = resolve(ctx.cwd ?? process.cwd(), typeof conf.working_directory === 'string' ? conf.working_directory : '.');
  const env = baseEnv(ctx.env ?? process.env);
  if (conf.environment && typeof conf.environment === 'object') {
    for (const [k, v] of Object.entries(conf.environment as Obj)) env[k] = String(v);
  }
  const common = {
    app: name,
    cwd,
    // `group` alone keeps the default user; `user` alone means that user's primary group.
    user: typeof conf.user === 'string' ? conf.user : ctx.user,
    group: typeof conf.group === 'string' ? conf.group : typeof conf.user === 'string' ? undefined : ctx.group,
    stdout: !ctx.noDaemon && typeof conf.stdout === 'string' ? conf.stdout : undefined,
    stderr: !ctx.noDaemon && typeof conf.stderr === 'string' ? conf.stderr : undefined,
  };
  const pool = poolConfig(conf);

  if (language === 'external') {
    const executable = String(conf.executable ?? '');
    let args = Array.isArray(conf.arguments) ? conf.arguments.map(String) : [];
    const node = runsNode(executable, args);
    if (node) args = withoutUnitLoader(args);
    env.NODE_OPTIONS = withPreload(env.NODE_OPTIONS);
    return {
      spec: { ...common, executable: isAbsolute(executable) ? executable : resolve(cwd, executable), arguments: args, env, waitReady: node },
      transport: 'http',
      slots: Infinity,
      targets: [],
      pool,
      // A connection stays with its process: only where the router need not see requests.
      handoff: HANDOFF && node && pool.spare === pool.max && pool.timeout === 0 && pool.requests === 0,
    };
  }

  if (language === 'python') {
    let interpreter = module.lib;
    if (typeof conf.home === 'string') {
      const home = resolve(cwd, conf.home);
      if (existsSync(resolve(home, 'pyvenv.cfg'))) {
        interpreter = [resolve(home, 'bin/python'), resolve(home, 'bin/python3')].find((p) => existsSync(p)) ?? resolve(home, 'bin/python');
      } else {
        env.PYTHONHOME = home;
      }
    }
    const targets = conf.targets && typeof conf.targets === 'object' ? Object.entries(conf.targets as Record<string, Obj>) : [];
    const target = (t: Obj) => ({
      module: t.module, callable: t.callable, factory: t.factory === true, prefix: t.prefix, protocol: conf.protocol,
    });
    const threads = Number.isInteger(conf.threads) && (conf.threads as number) > 0 ? conf.threads as number : 1;
    const options = {
      ...(targets.length ? { targets: targets.map(([, t]) => target(t)) } : target(conf)),
      path: conf.path,
      threads,
      thread_stack_size: conf.thread_stack_size,
    };
    env.JUNCTION_PYTHON_OPTIONS = JSON.stringify(options);
    return {
      spec: { ...common, executable: interpreter, arguments: [PYTHON_LAUNCHER], env, waitReady: true },
      transport: 'appproto',
      slots: threads,
      targets: targets.map(([n]) => n),
      pool,
    };
  }

  if (language === 'php') {
    const php = new PhpApp(name, conf as unknown as PhpAppConfig, { env: ctx.env, baseDir: ctx.cwd, phpCgi: module.lib || undefined });
    const spec = php.spawnSpec();
    // The defaults and the --no-daemon rule apply as for every other type.
    spec.user = common.user;
    spec.group = common.group;
    spec.stdout = common.stdout;
    spec.stderr = common.stderr;
    for (const k of ['user', 'group', 'stdout', 'stderr'] as const) if (spec[k] === undefined) delete spec[k];
    return {
      spec,
      transport: 'fastcgi',
      slots: 1,
      targets: conf.targets && typeof conf.targets === 'object' ? Object.keys(conf.targets) : [],
      pool,
      php,
    };
  }

  throw new Error(`application type "${language}" is not supported`);
}

/** `processes` and `limits` → PoolConfig (§2.3: integer N = N kept forever; object defaults max 1, spare 0, idle 15 s). */
export function poolConfig(conf: Obj): PoolConfig {
  const p = conf.processes;
  let max = 1, spare = 1, idleTimeout = 15_000;
  if (typeof p === 'number') {
    max = spare = p;
  } else if (p && typeof p === 'object') {
    const o = p as Obj;
    max = typeof o.max === 'number' ? o.max : 1;
    spare = typeof o.spare === 'number' ? o.spare : 0;
    idleTimeout = (typeof o.idle_timeout === 'number' ? o.idle_timeout : 15) * 1000;
  }
  const limits = (conf.limits && typeof conf.limits === 'object' ? conf.limits : {}) as Obj;
  return {
    max,
    spare,
    idleTimeout,
    timeout: (typeof limits.timeout === 'number' ? limits.timeout : 0) * 1000,
    requests: typeof limits.requests === 'number' ? limits.requests : 0,
  };
}

function baseEnv(src: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(src)) if (v !== undefined) env[k] = v;
  for (const k of PRIVATE_ENV) delete env[k];
  return env;
}

/** NODE_OPTIONS with `--require <preload>` appended (quoted when the path needs it). */
export function withPreload(current: string | undefined): string {
  const path = /[\s"\\]/.test(NODE_PRELOAD) ? `"${NODE_PRELOAD.replace(/["\\]/g, '\\$&')}"` : NODE_PRELOAD;
  const opt = `--require ${path}`;
  return current && current.trim() ? `${current.trim()} ${opt}` : opt;
}

const LOADER_FLAGS = new Set(['--loader', '--experimental-loader', '--require', '-r', '--import']);

/**
 * Node arguments without Unit's `unit-http` loaders (`--loader unit-http/loader.mjs`,
 * `--require unit-http/loader`, also in `--flag=value` form): the preload does
 * their job, and they would fail where `unit-http` is not installed (§4.7).
 */
export function withoutUnitLoader(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf('=');
    if (eq > 0 && LOADER_FLAGS.has(a.slice(0, eq)) && a.slice(eq + 1).startsWith('unit-http')) continue;
    if (LOADER_FLAGS.has(a) && args[i + 1]?.startsWith('unit-http')) { i++; continue; }
    out.push(a);
  }
  return out;
}

/** Whether the program is Node: `node*`, or `env` running `node*`. */
export function runsNode(executable: string, args: readonly string[]): boolean {
  const exe = basename(executable);
  if (exe.startsWith('node')) return true;
  if (exe === 'env') {
    const first = args.find((a) => !a.startsWith('-') && !a.includes('='));
    return first !== undefined && basename(first).startsWith('node');
  }
  return false;
}
