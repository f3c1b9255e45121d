/**
 * Language module discovery and `type` selection (spec/applications.md §2.2, §5).
 *
 * Unit loads `*.unit.so` modules; Junction's "modules" are language runtimes
 * found on the system, each run with a launcher shipped in `launchers/`.
 * `external` is always available and never listed.
 */
import { execFile } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { findPhpCgi, phpCgiVersion } from './php.ts';

/** One available language runtime. */
export interface ModuleInfo {
  /** Language name as used in `type`: `python`, `php`, later `perl`, `ruby`. */
  type: string;
  /** Full version, e.g. `3.11.2`. */
  version: string;
  /** What runs the language: for Python the interpreter path, for PHP the php-cgi path. Shown as `lib` in `/status`. */
  lib: string;
}

/** System install locations searched for versioned interpreters, in priority order. */
const PYTHON_DIRS = ['/usr/bin', '/usr/local/bin'];
const PYTHON_NAME = /^python3\.\d+$/;
/** Debian's versioned php-cgi binaries (`php-cgi8.2`), beside the `php-cgi` alternative. */
const PHP_CGI_NAME = /^php-cgi\d+\.\d+$/;

/**
 * Find the available language runtimes: every `python3.X` in `/usr/bin` and
 * `/usr/local/bin` (only when none is there, the `python3` on PATH), and PHP:
 * the `php-cgi` on PATH (findPhpCgi()) then every versioned `php-cgiX.Y` in
 * those directories, each asked for its version. Two runtimes of a language
 * reporting the same version keep the first found (Unit ignores a module with
 * "the same application language version"). Sorted by language, then version
 * descending (§5). Never rejects: a runtime that fails to answer is left out.
 */
export async function discoverModules(): Promise<ModuleInfo[]> {
  const [python, php] = await Promise.all([discoverPython(), discoverPhp()]);
  return sortModules([...python, ...php]);
}

/** The PHP runtimes: php-cgi binaries (FastCGI), see discoverModules(). */
export async function discoverPhp(): Promise<ModuleInfo[]> {
  const candidates: string[] = [];
  const first = findPhpCgi();
  if (first) candidates.push(first);
  for (const dir of PYTHON_DIRS) {
    let names: string[];
    try { names = await readdir(dir); } catch { continue; }
    for (const n of names.filter((n) => PHP_CGI_NAME.test(n)).sort()) candidates.push(join(dir, n));
  }
  const found: ModuleInfo[] = [];
  const seen = new Set<string>();
  for (const exe of new Set(candidates)) {
    const version = await phpCgiVersion(exe);
    if (!version || seen.has(version)) continue;
    seen.add(version);
    found.push({ type: 'php', version, lib: exe });
  }
  return found;
}

async function discoverPython(): Promise<ModuleInfo[]> {
  const candidates: string[] = [];
  for (const dir of PYTHON_DIRS) {
    let names: string[];
    try { names = await readdir(dir); } catch { continue; }
    for (const n of names.filter((n) => PYTHON_NAME.test(n)).sort()) candidates.push(join(dir, n));
  }
  if (candidates.length === 0) {
    const onPath = await which('python3');
    if (onPath) candidates.push(onPath);
  }
  const found: ModuleInfo[] = [];
  const seen = new Set<string>();
  for (const exe of candidates) {
    const version = await pythonVersion(exe);
    if (!version || seen.has(version)) continue;
    seen.add(version);
    found.push({ type: 'python', version, lib: exe });
  }
  return found;
}

/** Sort by language name, then by version descending (numeric per component). */
export function sortModules(modules: ModuleInfo[]): ModuleInfo[] {
  return [...modules].sort((a, b) => a.type < b.type ? -1 : a.type > b.type ? 1 : compareVersions(b.version, a.version));
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[^0-9]+/).filter(Boolean).map(Number);
  const pb = b.split(/[^0-9]+/).filter(Boolean).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The module `external` stands for: no version, nothing to load. */
export const EXTERNAL_MODULE: ModuleInfo = { type: 'external', version: '', lib: '' };

/**
 * Parse an application `type` (`python`, `python 3`, `python3.11`, `php 8.2.1`)
 * into the language name (leading characters up to the first space or digit)
 * and a version prefix (the rest, after one optional space). `go` is Unit's
 * alias of `external`.
 */
export function parseType(type: string): { language: string; version: string } {
  const m = /^([^ 0-9]*) ?(.*)$/s.exec(type)!;
  const language = m[1] === 'go' ? 'external' : m[1];
  return { language, version: m[2] };
}

/**
 * Choose the module for an application `type` (§2.2): the first module of that
 * language (list sorted as by discoverModules()) whose version starts with the
 * requested prefix at a component boundary — the character after the prefix
 * is absent or switches between digit and non-digit — so `3` matches `3.11.2`
 * and `3.1` does not. `external`/`go` without a version always resolve to
 * EXTERNAL_MODULE. Returns undefined when nothing matches; the validator then
 * reports `The module to run "<type>" is not found among the available
 * application modules.`
 */
export function selectModule(type: string, modules: readonly ModuleInfo[]): ModuleInfo | undefined {
  const { language, version } = parseType(type);
  if (language === 'external') return version === '' ? EXTERNAL_MODULE : undefined;
  const sorted = sortModules(modules.filter((m) => m.type === language));
  return sorted.find((m) => versionMatches(m.version, version));
}

function versionMatches(full: string, prefix: string): boolean {
  if (prefix === '') return true;
  if (!full.startsWith(prefix)) return false;
  if (full.length === prefix.length) return true;
  const isDigit = (c: string) => c >= '0' && c <= '9';
  return isDigit(full[prefix.length]) !== isDigit(prefix[prefix.length - 1]);
}

function pythonVersion(exe: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(exe, ['-I', '-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'],
      { timeout: 10_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
      (err, stdout) => {
        const v = String(stdout).trim();
        resolve(!err && /^\d+\.\d+\.\d+$/.test(v) ? v : undefined);
      });
  });
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      await access(file, constants.X_OK);
      return file;
    } catch { /* not here */ }
  }
  return undefined;
}
