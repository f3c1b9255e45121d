/**
 * Processes for the benchmark: spawning pinned to a set of CPUs, waiting for a
 * port or an HTTP answer, stopping a whole process group, and summing the
 * resident memory of a process tree from /proc. Every process the harness
 * starts is remembered, so an interrupted run still stops them all.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A process the harness started, in its own process group. */
export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last few KiB of its stderr and stdout, for error reports. */
  output(): string;
  /** Resolves with the exit code (or signal name) once it has exited. */
  readonly exited: Promise<string>;
}

const running = new Set<Proc>();
/** Children of run(), such as wrk. */
const commands = new Set<ChildProcess>();
const OUTPUT_KEEP = 4096;

/** Options for {@link start}: `cpus` is a taskset CPU list such as `"0"` or `"0-2"`. */
export interface StartOptions extends SpawnOptions {
  cpus?: string;
}

/**
 * Start `command args` in a new process group (so that stop() reaches its
 * workers too), pinned to `cpus` with taskset when given.
 */
export function start(name: string, command: string, args: string[], o: StartOptions = {}): Proc {
  const { cpus, ...spawnOptions } = o;
  const [cmd, argv] = cpus ? ['taskset', ['-c', cpus, command, ...args]] : [command, args];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions, detached: true });
  let out = '';
  const keep = (c: Buffer) => { out = (out + c.toString('utf8')).slice(-OUTPUT_KEEP); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ?? String(code)));
    child.once('error', (e) => { out += `\n${e.message}`; resolve('spawn error'); });
  });
  const p: Proc = { name, child, pid: child.pid ?? -1, output: () => out.trim(), exited };
  running.add(p);
  void exited.then(() => running.delete(p));
  return p;
}

/**
 * Stop a process and its group: SIGTERM, then SIGKILL after `graceMs`.
 * The group is also swept with SIGKILL afterwards, for workers left behind.
 */
export async function stop(p: Proc, graceMs = 5000): Promise<void> {
  const signalGroup = (sig: NodeJS.Signals) => { try { process.kill(-p.pid, sig); } catch { /* gone */ } };
  if (p.pid > 0 && p.child.exitCode === null && p.child.signalCode === null) {
    try { process.kill(p.pid, 'SIGTERM'); } catch { /* gone */ }
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    if (await Promise.race([p.exited, timer]) === 'timeout') signalGroup('SIGKILL');
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 2000).unref())]);
  }
  if (p.pid > 0) signalGroup('SIGKILL');
  running.delete(p);
}

/** Stop, at once, every process still running (on exit or interruption). */
export function killAll(): void {
  for (const p of running) {
    try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  running.clear();
  for (const c of commands) c.kill('SIGKILL');
  commands.clear();
}

/** Run a command to completion with a time bound; resolves with its output and status. */
export function run(command: string, args: string[], timeoutMs: number, o: SpawnOptions = {}):
  Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...o });
    commands.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c) => { stdout += c; });
    child.stderr?.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = () => { clearTimeout(timer); commands.delete(child); };
    child.once('error', (e) => { done(); resolve({ status: null, stdout, stderr: stderr + e.message }); });
    child.once('close', (status) => { done(); resolve({ status, stdout, stderr }); });
  });
}

/** The first line of `command args` output (stdout, else stderr), or '' when it does not run. */
export function versionOf(command: string, args: string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return '';
  return (`${r.stdout ?? ''}\n${r.stderr ?? ''}`).split('\n').map((l) => l.trim()).find((l) => l) ?? '';
}

/** Absolute path of an executable found on PATH or in the usual sbin directories, or ''. */
export function which(name: string): string {
  if (name.includes('/')) return isExecutable(name) ? name : '';
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const f = path.join(d, name);
    if (isExecutable(f)) return f;
  }
  return '';
}

function isExecutable(f: string): boolean {
  try { fs.accessSync(f, fs.constants.X_OK); return fs.statSync(f).isFile(); } catch { return false; }
}

/** A loopback TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Poll `fn` every 50 ms until it returns a truthy value; throws `what` after `ms`. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, ms: number, p?: Proc): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    if (p && (p.child.exitCode !== null || p.child.signalCode !== null)) {
      throw new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}): ${lastLine(p.output())}`);
    }
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(50);
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last non-empty line of a text, shortened for a table cell. */
export function lastLine(text: string, max = 160): string {
  const line = text.split('\n').map((l) => l.trim()).filter((l) => l).pop() ?? '';
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

/** Pids of `root` and all its descendants, from /proc. */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  }
  return tree.filter((pid) => parent.has(pid));
}

/** Resident memory of a process tree: the sum, and each process's share by name. */
export interface TreeRss {
  bytes: number;
  processes: number;
  each: { name: string; bytes: number }[];
}

/** A process's name: its title's word after `junction:` when it has one, else its comm. */
function processName(pid: number): string {
  try {
    const title = /^junction: ("[^"]*"|\S+)/.exec(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '))?.[1];
    if (title) return title;
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch { return String(pid); }
}

/** Sum of VmRSS, in bytes, over `root` and its descendants. */
export function treeRss(root: number): TreeRss {
  const each: { name: string; bytes: number }[] = [];
  for (const pid of processTree(root)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) each.push({ name: processName(pid), bytes: Number(m[1]) * 1024 });
    } catch { /* gone */ }
  }
  return { bytes: each.reduce((a, e) => a + e.bytes, 0), processes: each.length, each };
}

let clockTicks = 0;

/** Kernel clock ticks per second (`getconf CLK_TCK`, 100 on Linux). */
function ticksPerSecond(): number {
  if (clockTicks === 0) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicks = Number(r.stdout?.trim()) || 100;
  }
  return clockTicks;
}

/** CPU time (user + system) used so far by `root` and its descendants, in microseconds, from /proc. */
export function treeCpu(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* gone */ }
  }
  return ticks * 1e6 / ticksPerSecond();
}

/**
 * Move `root` and all its descendants (every thread of each) to the CPUs of
 * the taskset list `cpus`; processes they start later inherit it.
 */
export function setAffinity(root: number, cpus: string): void {
  for (const pid of processTree(root)) spawnSync('taskset', ['-a', '-c', '-p', cpus, String(pid)], { stdio: 'ignore' });
}

/** The CPUs this process may run on, as a list of CPU numbers. */
export function allowedCpus(): number[] {
  const r = spawnSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
  const list = /:\s*([\d,\-]+)\s*$/.exec(r.stdout ?? '')?.[1];
  if (!list) return Array.from({ length: os.availableParallelism() }, (_, i) => i);
  const cpus: number[] = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}
