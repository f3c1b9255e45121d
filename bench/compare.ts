/**
 * One load scenario, side by side: Junction (configured for it over the
 * control socket) and every reference are started and checked first, all
 * warmed up, then measured in turns — round after round when more than one
 * round is asked — so that a change in the machine's load during the
 * scenario touches every server alike. Each server's row keeps the round
 * with the median req/s.
 */
import { mismatch, verify } from './expect.ts';
import { allowedCpus, freePort, lastLine, sleep, treeCpu } from './proc.ts';
import type { LoadScenario, Shared } from './scenarios.ts';
import type { JunctionDaemon, JunctionKeeper } from './servers/junction.ts';
import type { LoadRow } from './table.ts';
import type { RunEnv } from './types.ts';
import { wrk, type Load, type WrkResult } from './wrk.ts';

/** How hard and how long to drive each server. */
export interface Plan {
  load: Load;
  warmupSeconds: number;
  rounds: number;
}

/** A server of the scenario: where it listens once ready, and how to stop it. */
interface Contender {
  row: LoadRow;
  port?: number;
  /** Root of the server's process tree, for its CPU time. */
  pid?: number;
  /** Roots of other process trees of the server (Running.also). */
  also?: number[];
  stop(): Promise<void>;
  results: WrkResult[];
}

/** The text of an error, on one line. */
export function message(e: unknown): string {
  return lastLine(e instanceof Error ? e.message : String(e), 150);
}

/** Wait (up to 20 s, as application processes start) for Junction to answer as expected; throws the last mismatch. */
async function junctionReady(j: JunctionDaemon, port: number, sc: LoadScenario): Promise<void> {
  const end = Date.now() + 20_000;
  let why = '';
  for (;;) {
    try {
      why = await mismatch(port, sc.path, sc.expect);
      if (!why) return;
    } catch (e) { why = message(e); }
    if (!j.alive()) throw new Error(`Junction exited: ${j.lastError() || why}`);
    if (Date.now() > end) {
      const log = j.lastError();
      throw new Error(`${why}${log ? `; log: ${log}` : ''}`);
    }
    await sleep(100);
  }
}

/**
 * Configure Junction for `sc` and wait until it answers. For an unpinned
 * scenario on a pinned run, its processes are moved to every allowed CPU for
 * the scenario's time (`pinned` is the run's server CPU list, put back at the end).
 */
async function startJunction(sc: LoadScenario, env: RunEnv, keeper: JunctionKeeper, shared: Shared,
  pinned?: string): Promise<Contender> {
  const c: Contender = { row: { scenario: sc.title, server: 'Junction', junction: true }, stop: () => keeper.reset(), results: [] };
  try {
    const j = await keeper.get();
    if (pinned !== undefined) {
      j.setCpus(allowedCpus().join(','));
      c.stop = async () => { await keeper.reset(); if (j.alive()) j.setCpus(pinned); };
    }
    const port = await freePort();
    await j.configure(sc.junction(env, port, shared));
    await junctionReady(j, port, sc);
    c.port = port;
    c.pid = j.proc.pid;
  } catch (e) {
    c.row.na = message(e);
  }
  return c;
}

async function startReference(sc: LoadScenario, i: number, env: RunEnv, shared: Shared): Promise<Contender> {
  const ref = sc.references[i];
  const c: Contender = { row: { scenario: sc.title, server: ref.server, junction: false }, stop: async () => {}, results: [] };
  try {
    const running = await ref.start(env, shared);
    c.stop = () => running.stop();
    await verify(running.port, sc.path, sc.expect);
    c.port = running.port;
    c.pid = running.pid;
    c.also = running.also;
  } catch (e) {
    c.row.na = message(e);
  }
  return c;
}

/** One measured wrk run on `c`, with the CPU time its processes spent per request. */
async function measure(c: Contender, url: string, load: Plan['load']): Promise<WrkResult> {
  const cpu = () => [c.pid!, ...c.also ?? []].reduce((sum, pid) => sum + treeCpu(pid), 0);
  const before = c.pid !== undefined ? cpu() : NaN;
  const r = await wrk(url, load);
  if (c.pid !== undefined && r.requests > 0) r.cpuPerRequest = (cpu() - before) / r.requests;
  return r;
}

/** The result with the median req/s (the lower middle one for an even count). */
function median(results: WrkResult[]): WrkResult {
  const sorted = [...results].sort((a, b) => a.rps - b.rps);
  return sorted[(sorted.length - 1) >> 1];
}

/** Run one load scenario on Junction and on each of its references; never throws. */
export async function compare(sc: LoadScenario, env: RunEnv, keeper: JunctionKeeper, plan: Plan,
  say: (line: string) => void): Promise<LoadRow[]> {
  say(sc.title);
  // An unpinned scenario runs every server and wrk free to use every CPU.
  const pinned = sc.unpinned ? env.serverCpus : undefined;
  if (sc.unpinned) {
    env = { ...env, serverCpus: undefined, loadCpus: undefined };
    plan = { ...plan, load: { ...plan.load, cpus: undefined } };
  }
  let shared: Shared = {};
  let teardown = async () => {};
  if (sc.setup) {
    try {
      ({ shared, teardown } = await sc.setup(env));
    } catch (e) {
      const na = `setup failed: ${message(e)}`;
      return [{ scenario: sc.title, server: 'Junction', junction: true, na },
        ...sc.references.map((r) => ({ scenario: sc.title, server: r.server, junction: false, na }))];
    }
  }
  const contenders: Contender[] = [];
  try {
    contenders.push(await startJunction(sc, env, keeper, shared, pinned));
    for (let i = 0; i < sc.references.length; i++) contenders.push(await startReference(sc, i, env, shared));
    const ready = () => contenders.filter((c) => c.port !== undefined && !c.row.na);
    const url = (c: Contender) => `http://127.0.0.1:${c.port}${sc.path}`;
    if (plan.warmupSeconds > 0) {
      for (const c of ready()) {
        try { await wrk(url(c), { ...plan.load, seconds: plan.warmupSeconds }); } catch (e) { c.row.na = `warm-up: ${message(e)}`; }
      }
    }
    for (let round = 0; round < plan.rounds; round++) {
      for (const c of ready()) {
        try { c.results.push(await measure(c, url(c), plan.load)); } catch (e) { c.row.na = message(e); }
      }
    }
    for (const c of contenders) {
      if (!c.row.na && c.results.length) {
        c.row.result = median(c.results);
        if (c.results.length > 1) c.row.range = [Math.min(...c.results.map((r) => r.rps)), Math.max(...c.results.map((r) => r.rps))];
      }
      const r = c.row.result;
      say(`  ${c.row.server}: ${r ? `${Math.round(r.rps)} req/s, p99 ${r.p99.toFixed(2)} ms` : `n/a (${c.row.na})`}`);
    }
  } finally {
    for (const c of contenders) await c.stop().catch(() => {});
    await teardown().catch(() => {});
  }
  return contenders.map((c) => c.row);
}
