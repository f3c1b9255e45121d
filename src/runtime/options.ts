/**
 * Command-line options of `junction`, the same words `unitd` takes
 * (spec/control-api.md §1.1, spec/applications.md §1.2): each option and its
 * argument are separate argv words.
 *
 * Defaults: when started as root, the paths of Unit's distribution packages
 * (so scripts written for a packaged Unit keep working); otherwise everything
 * lives under one per-user directory, `$JUNCTION_HOME` or `~/.junction`, so the
 * server runs with no setup at all.
 */
import os from 'node:os';
import path from 'node:path';
import { JUNCTION_VERSION, UNIT_VERSION } from './version.ts';

export interface Options {
  daemon: boolean;
  /** Control socket address: `unix:/path`, `unix:@abstract`, `IP:port`, `*:port`, `[v6]:port`. */
  control: string;
  controlMode: number;
  controlUser?: string;
  controlGroup?: string;
  pid: string;
  log: string;
  modulesdir: string;
  statedir: string;
  tmpdir: string;
  user: string;
  group?: string;
}

/** Thrown for a bad command line; `message` is what unitd prints to stderr. */
export class UsageError extends Error {}

/** What a `--help`/`--version` request wants printed, instead of running. */
export type Parsed = { run: Options } | { help: string } | { version: string };

/** Directory holding every per-user default path (non-root). */
export function userHome(env = process.env): string {
  return env.JUNCTION_HOME || path.join(os.homedir(), '.junction');
}

export function defaults(isRoot = process.getuid?.() === 0, env = process.env): Options {
  if (isRoot) {
    return {
      daemon: true,
      control: 'unix:/var/run/control.unit.sock',
      controlMode: 0o600,
      pid: '/var/run/unit.pid',
      log: '/var/log/unit.log',
      modulesdir: '/usr/lib/unit/modules',
      statedir: '/var/lib/unit',
      tmpdir: '/var/tmp',
      user: 'nobody',
    };
  }
  const home = userHome(env);
  return {
    daemon: true,
    control: `unix:${path.join(home, 'control.unit.sock')}`,
    controlMode: 0o600,
    pid: path.join(home, 'unit.pid'),
    log: path.join(home, 'unit.log'),
    modulesdir: path.join(home, 'modules'),
    statedir: path.join(home, 'state'),
    tmpdir: os.tmpdir(),
    user: os.userInfo().username,
  };
}

const WITH_ARG: Record<string, [keyof Options, string, boolean?]> = {
  '--control': ['control', 'address'],
  '--control-mode': ['controlMode', 'mode'],
  '--control-user': ['controlUser', 'username'],
  '--control-group': ['controlGroup', 'groupname'],
  '--pid': ['pid', 'filename'],
  '--log': ['log', 'filename'],
  '--modulesdir': ['modulesdir', 'directory'],
  '--modules': ['modulesdir', 'directory', true],
  '--statedir': ['statedir', 'directory'],
  '--state': ['statedir', 'directory', true],
  '--tmpdir': ['tmpdir', 'directory'],
  '--tmp': ['tmpdir', 'directory', true],
  '--user': ['user', 'username'],
  '--group': ['group', 'groupname'],
};

/**
 * Parse argv (without the node and script words).
 * @throws UsageError with unitd's wording: `unknown option "X", try "junction -h" for available options`,
 *         `option "--log" requires filename`.
 * Deprecated aliases (`--modules`, `--state`, `--tmp`) print a notice to stderr through `warn`.
 */
export function parseArgs(argv: string[], argv0 = 'junction', warn: (s: string) => void = (s) => process.stderr.write(s + '\n')): Parsed {
  const o = defaults();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') return { help: usage(argv0, o) };
    if (a === '--version') {
      return { version: `unit version: ${UNIT_VERSION}\njunction version: ${JUNCTION_VERSION} (Node.js ${process.version})\n` };
    }
    if (a === '--no-daemon') { o.daemon = false; continue; }
    const spec = WITH_ARG[a];
    if (!spec) throw new UsageError(`unknown option "${a}", try "${argv0} -h" for available options`);
    const [key, what, deprecated] = spec;
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`option "${a}" requires ${what}`);
    if (deprecated) warn(`option "${a}" is deprecated and will be removed, use "${a}dir" instead`);
    if (key === 'controlMode') {
      const m = /^[0-7]{1,4}$/.test(v) ? parseInt(v, 8) : NaN;
      o.controlMode = Number.isNaN(m) ? 0o600 : m;
    } else {
      (o as unknown as Record<string, string>)[key] = v;
    }
  }
  return { run: o };
}

/** The `--help` text: options with their defaults. */
export function usage(argv0: string, d: Options = defaults()): string {
  return `junction ${JUNCTION_VERSION} (a drop-in for unit ${UNIT_VERSION})

Usage: ${argv0} [options]

  --help, -h                  print this help
  --version                   print the version and exit
  --no-daemon                 run in the foreground

  --control ADDRESS           control API socket address
                              default: "${d.control}"
  --control-mode MODE         permissions of a unix control socket (octal)
                              default: "0600"
  --control-user USER         owner of a unix control socket
  --control-group GROUP       group of a unix control socket

  --pid FILE                  pid file
                              default: "${d.pid}"
  --log FILE                  error log file
                              default: "${d.log}"

  --modulesdir DIR            language modules directory (reported only)
                              default: "${d.modulesdir}"
  --statedir DIR              state directory (configuration, certificates)
                              default: "${d.statedir}"
  --tmpdir DIR                temporary files directory
                              default: "${d.tmpdir}"

  --user USER                 unprivileged user for the router and applications (root only)
                              default: "${d.user}"
  --group GROUP               group of that user
                              default: the user's primary group
`;
}
