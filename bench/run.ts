/**
 * `npm run bench`: Junction side by side with what one would run instead.
 *
 * Installs the missing tools, starts Junction once (configured over its
 * control socket for each scenario), starts the reference servers on
 * loopback, checks that every server answers the same thing, warms them up,
 * drives them with wrk, and prints the tables. A scenario that cannot run on
 * one server is reported as n/a with the reason; the run always finishes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compare } from './compare.ts';
import { measureConfigApply } from './config-apply.ts';
import { ensureInstalled } from './install.ts';
import { describeMachine } from './machine.ts';
import { measureMemory } from './memory.ts';
import { parseOptions, USAGE, UsageError, type Options } from './options.ts';
import { allowedCpus, killAll, which } from './proc.ts';
import { SCENARIOS } from './scenarios.ts';
import { JunctionKeeper } from './servers/junction.ts';
import { loadCells, otherCells, render, type LoadRow, type OtherRow } from './table.ts';
import type { RunEnv } from './types.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OTHER = [
  { id: 'memory', title: 'idle resident memory of Junction, node:http and nginx' },
  { id: 'config', title: 'time to apply a 1-route and a 1,000-route configuration' },
];

const say = (line: string) => process.stderr.write(`${line}\n`);

/** Pin wrk to the last allowed CPU and the servers to the others, when there are two or more. */
function pinning(o: Options): { serverCpus?: string; loadCpus?: string } {
  const cpus = allowedCpus();
  if (!o.pin || cpus.length < 2 || !which('taskset')) return {};
  return { serverCpus: cpus.slice(0, -1).join(','), loadCpus: String(cpus[cpus.length - 1]) };
}

/** Write the 1 KiB and 1 MiB files served by the static scenarios. */
function makeFiles(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const pattern = Buffer.from('Junction benchmark static file.\n');
  for (const [name, size] of [['1k.bin', 1024], ['1m.bin', 1024 * 1024]] as const) {
    const b = Buffer.alloc(size);
    for (let i = 0; i < size; i += pattern.length) pattern.copy(b, i);
    fs.writeFileSync(path.join(dir, name), b);
  }
}

function list(): void {
  for (const s of OTHER) process.stdout.write(`${s.id.padEnd(12)} ${s.title}\n`);
  for (const s of SCENARIOS) {
    process.stdout.write(`${s.id.padEnd(12)} ${s.title}: Junction vs ${s.references.map((r) => r.server).join(', ')}` +
      `${s.group ? ` (also selected by "${s.group}")` : ''}\n`);
  }
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) { process.stderr.write(`${e.message}\n${USAGE}`); return 2; }
    throw e;
  }
  if (o.help) { process.stdout.write(USAGE); return 0; }
  if (o.list) { list(); return 0; }
  const ids = [...OTHER.map((s) => s.id), ...SCENARIOS.map((s) => s.id), ...SCENARIOS.flatMap((s) => s.group ?? [])];
  const unknown = (o.scenarios ?? []).filter((s) => !ids.includes(s));
  if (unknown.length) { process.stderr.write(`unknown scenario ${unknown.join(', ')} (known: ${ids.join(', ')})\n`); return 2; }
  const selected = new Set(o.scenarios ?? ids);
  for (const sc of SCENARIOS) if (sc.group && selected.has(sc.group)) selected.add(sc.id);

  if (o.install) await ensureInstalled(say);
  if (!which('wrk')) say('wrk is not installed: every load scenario will be n/a');

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-bench-'));
  // Started as root, Junction's routers serve as `nobody`: they must reach the static files and their run directory.
  fs.chmodSync(tmp, 0o755);
  const cleanup = () => { killAll(); fs.rmSync(tmp, { recursive: true, force: true }); };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { cleanup(); process.exit(130); });
  process.once('exit', () => killAll());

  const env: RunEnv = { tmp, appsDir: path.join(ROOT, 'bench', 'apps'), filesDir: path.join(tmp, 'files'), root: ROOT, ...pinning(o) };
  makeFiles(env.filesDir);
  const plan = {
    load: { threads: o.threads, connections: o.connections, seconds: o.duration, cpus: env.loadCpus },
    warmupSeconds: o.warmup,
    rounds: o.rounds,
  };
  const machine = describeMachine();
  const settings = `wrk -t${o.threads} -c${o.connections} -d${o.duration}s --latency, after ${o.warmup} s of warm-up` +
    `${o.rounds > 1 ? `, median of ${o.rounds} rounds` : ''}; ` +
    (env.loadCpus ? `wrk on CPU ${env.loadCpus}, servers on CPU ${env.serverCpus}` : 'no CPU pinning');

  const keeper = new JunctionKeeper(env, say);
  const other: OtherRow[] = [];
  const rows: LoadRow[] = [];
  try {
    if (selected.has('memory')) { say('idle memory'); other.push(...await measureMemory(env, () => keeper.get())); }
    if (selected.has('config')) { say('configuration apply time'); other.push(...await measureConfigApply(() => keeper.get())); }
    for (const sc of SCENARIOS) {
      if (selected.has(sc.id)) rows.push(...await compare(sc, env, keeper, plan, say));
    }
  } finally {
    await keeper.stop();
    cleanup();
  }

  const out: string[] = [''];
  for (const [k, v] of Object.entries(machine)) out.push(`${k.padEnd(10)}${v}`);
  out.push(`${'load'.padEnd(10)}${settings}`, '');
  if (rows.length) out.push(render(loadCells(rows), o.markdown));
  if (other.length) out.push(render(otherCells(other), o.markdown));
  out.push('Junction/ref: for req/s, Junction ÷ reference (above 1 = Junction faster); ' +
    'for memory and time, Junction ÷ reference (above 1 = Junction uses more).');
  process.stdout.write(out.join('\n') + '\n');
  if (o.json) {
    fs.writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), machine, settings, load: rows, other }, null, 2) + '\n');
  }
  return 0;
}

process.exitCode = await main();
