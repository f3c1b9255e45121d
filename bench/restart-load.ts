/**
 * `npm run bench:restart-load`: does Junction drop requests while it replaces
 * an application's processes?
 *
 * 50 keep-alive clients (no retries: every error counts) send GET requests
 * back to back to an unmodified Node app for 20 s. Meanwhile the app is
 * restarted twice through the control API (GET
 * /control/applications/app/restart) and its `processes` changed (PUT), at
 * a quarter, half and three quarters of the run. Run once with the listener
 * passing straight to the app (connections are handed to its processes) and
 * once through routes (the router proxies each request). Prints, per path,
 * the requests answered, the failures by kind (status or socket error), the
 * rate, the slowest answer, and the app processes before and after.
 *
 * Flags: --duration S (20), --clients N (50), --paths direct,routed, --json FILE.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { JunctionDaemon } from './servers/junction.ts';
import { freePort, killAll, processTree, sleep } from './proc.ts';
import type { RunEnv } from './types.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Options { duration: number; clients: number; paths: ('direct' | 'routed')[]; json?: string }

function parse(argv: string[]): Options {
  const o: Options = { duration: 20, clients: 50, paths: ['direct', 'routed'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--duration') { o.duration = Number(v); i++; }
    else if (a === '--clients') { o.clients = Number(v); i++; }
    else if (a === '--paths') { o.paths = v.split(',') as Options['paths']; i++; }
    else if (a === '--json') { o.json = v; i++; }
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node bench/restart-load.ts [--duration S] [--clients N] [--paths direct,routed] [--json FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!(o.duration > 0) || !(o.clients > 0)) throw new Error('--duration and --clients must be positive');
  return o;
}

/** What happened during one run. */
interface Result {
  path: string;
  seconds: number;
  requests: number;
  failed: number;
  failures: Record<string, number>;
  rate: number;
  slowestMs: number;
  events: string[];
  processesBefore: number[];
  processesAfter: number[];
}

const say = (line: string) => process.stderr.write(`${line}\n`);

/** `appProcesses(d)` once it has `n` processes (old ones finish exiting), or after 10 s. */
async function settled(d: JunctionDaemon, n: number): Promise<number[]> {
  const end = performance.now() + 10_000;
  let pids = appProcesses(d);
  while (pids.length !== n && performance.now() < end) {
    await sleep(50);
    pids = appProcesses(d);
  }
  return pids;
}

/** The daemon's application processes (everything under main that runs app.js). */
function appProcesses(d: JunctionDaemon): number[] {
  return processTree(d.proc.pid).filter((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('app.js'); } catch { return false; }
  });
}

async function run(d: JunctionDaemon, how: 'direct' | 'routed', o: Options): Promise<Result> {
  const port = await freePort();
  const app = {
    type: 'external', working_directory: path.join(ROOT, 'bench', 'apps', 'node'), executable: process.execPath,
    arguments: ['app.js'], processes: 2,
  };
  await d.configure({
    listeners: { [`127.0.0.1:${port}`]: { pass: how === 'direct' ? 'applications/app' : 'routes' } },
    routes: [{ action: { pass: 'applications/app' } }],
    applications: { app },
  });
  const processesBefore = await settled(d, 2);
  const result: Result = {
    path: how, seconds: o.duration, requests: 0, failed: 0, failures: {}, rate: 0, slowestMs: 0, events: [],
    processesBefore, processesAfter: [],
  };
  const fail = (kind: string) => { result.failed++; result.failures[kind] = (result.failures[kind] ?? 0) + 1; };
  let running = true;
  const agents: http.Agent[] = [];
  const one = (agent: http.Agent) => new Promise<void>((resolve) => {
    const t0 = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      res.on('end', () => {
        result.slowestMs = Math.max(result.slowestMs, performance.now() - t0);
        if (res.statusCode === 200) result.requests++;
        else fail(String(res.statusCode));
        resolve();
      });
      res.on('error', (e: NodeJS.ErrnoException) => { fail(e.code ?? e.message); resolve(); });
    });
    req.on('error', (e: NodeJS.ErrnoException) => { fail(e.code ?? e.message); resolve(); });
  });
  const clients: Promise<void>[] = [];
  for (let i = 0; i < o.clients; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    clients.push((async () => { while (running) await one(agent); })());
  }
  const t0 = performance.now();
  const at = async (fraction: number, what: string, action: () => Promise<{ status: number; body: string }>) => {
    await sleep(Math.max(0, t0 + o.duration * 1000 * fraction - performance.now()));
    const r = await action();
    const line = `${((performance.now() - t0) / 1000).toFixed(1)} s: ${what} → ${r.status} ${r.body.replace(/\s+/g, ' ').trim()}`;
    result.events.push(line);
    say(`  ${line}`);
  };
  await at(0.25, 'GET /control/applications/app/restart', () => d.api('GET', '/control/applications/app/restart'));
  await at(0.5, 'GET /control/applications/app/restart', () => d.api('GET', '/control/applications/app/restart'));
  await at(0.75, 'PUT /config/applications/app/processes 4', () => d.api('PUT', '/config/applications/app/processes', '4'));
  await sleep(Math.max(0, t0 + o.duration * 1000 - performance.now()));
  running = false;
  await Promise.all(clients);
  const elapsed = (performance.now() - t0) / 1000;
  for (const a of agents) a.destroy();
  result.rate = Math.round(result.requests / elapsed);
  result.processesAfter = await settled(d, 4);
  return result;
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-restart-load-'));
  // Started as root, Junction's routers serve as `nobody`: they must reach their run directory.
  fs.chmodSync(tmp, 0o755);
  const env: RunEnv = { tmp, appsDir: path.join(ROOT, 'bench', 'apps'), filesDir: path.join(tmp, 'files'), root: ROOT };
  const cleanup = () => { killAll(); fs.rmSync(tmp, { recursive: true, force: true }); };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { cleanup(); process.exit(130); });
  const results: Result[] = [];
  let d: JunctionDaemon | undefined;
  try {
    d = await JunctionDaemon.start(env);
    for (const how of o.paths) {
      say(`${how}: ${o.clients} keep-alive clients for ${o.duration} s`);
      results.push(await run(d, how, o));
    }
  } finally {
    await d?.stop();
    cleanup();
  }
  const lines = ['', `restart under load: ${o.clients} keep-alive clients, ${o.duration} s each, Node ${process.version}, ${os.cpus().length} CPUs`, ''];
  for (const r of results) {
    const failures = Object.entries(r.failures).map(([k, n]) => `${k} × ${n}`).join(', ') || 'none';
    lines.push(`${r.path === 'direct' ? 'listener → application (connections handed over)' : 'listener → routes → application (proxied)'}`);
    lines.push(`  answered ${r.requests} (${r.rate} req/s), failed ${r.failed} (${failures}), slowest ${r.slowestMs.toFixed(0)} ms`);
    lines.push(`  app processes before ${r.processesBefore.join(' ')}, after ${r.processesAfter.join(' ')}`);
    for (const e of r.events) lines.push(`  ${e}`);
    lines.push('');
  }
  process.stdout.write(lines.join('\n'));
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), options: o, results }, null, 2) + '\n');
  return results.some((r) => r.failed > 0) ? 1 : 0;
}

process.exitCode = await main();
