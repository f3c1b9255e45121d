/**
 * Helpers shared by the application tests that run the real daemon
 * (apps-*.test.ts): application objects for the fixtures, JSON requests,
 * keep-alive clients, application pids, and a client that drives load while
 * something else happens.
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, Junction, request, waitFor, type Response } from './harness.ts';

export const NODE_DIR = path.join(FIXTURES, 'node');

/** An `external` application running `node <file>` from test/fixtures/node, plus `extra` members. */
export function nodeApp(file: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'external', working_directory: NODE_DIR, executable: process.execPath, arguments: [file], ...extra };
}

/**
 * One router process (`listen_threads: 1`): checks of what an application sees
 * on each path must not depend on which router the kernel gives a connection
 * to (the others reach applications through the primary router's gateway).
 */
export const ONE_ROUTER = { listen_threads: 1 };

/**
 * A configuration with two listeners for the same applications: `direct`
 * passes straight to application `app` (connections may be handed to its
 * processes), `routed` goes through routes (the router proxies every request).
 * One router unless `settings` says otherwise.
 */
export function twoPaths(direct: number, routed: number, app: string, applications: Record<string, unknown>,
  settings: Record<string, unknown> = ONE_ROUTER): Record<string, unknown> {
  return {
    listeners: {
      [`127.0.0.1:${direct}`]: { pass: `applications/${app}` },
      [`127.0.0.1:${routed}`]: { pass: 'routes' },
    },
    routes: [{ action: { pass: `applications/${app}` } }],
    applications,
    settings,
  };
}

/** GET with a keep-alive agent (or a fresh connection when none is given). */
export function getWith(port: number, p: string, agent?: http.Agent, headers: Record<string, string> = {}): Promise<Response> {
  return request({ host: '127.0.0.1', port, path: p, headers, agent: agent ?? false } as http.RequestOptions);
}

/** GET `p` and parse the JSON body; throws unless 200. */
export async function json<T = any>(port: number, p: string, agent?: http.Agent): Promise<T> {
  const r = await getWith(port, p, agent);
  if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as T;
}

/** `/status/applications/NAME` of the daemon. */
export async function appStatus(j: Junction, name: string): Promise<{ processes: { running: number; starting: number; idle: number }; requests: { active: number } }> {
  const r = await j.api('GET', `/status/applications/${encodeURIComponent(name)}`);
  if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body}`);
  return r.json;
}

/** Pids of the daemon's processes running fixture `file` (argv contains it). */
export function appPids(j: Junction, file: string): number[] {
  return j.pidsOf(file).filter((pid) => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv.some((a) => a === file || a.endsWith(`/${file}`)) && !argv[0].endsWith('/sh');
    } catch { return false; }
  }).sort((a, b) => a - b);
}

/** Wait until the daemon runs exactly `n` processes of fixture `file` (and `ok` holds for them); their pids. */
export async function waitPids(j: Junction, file: string, n: number, ok: (pids: number[]) => boolean = () => true): Promise<number[]> {
  let pids: number[] = [];
  await waitFor(() => {
    pids = appPids(j, file);
    return pids.length === n && ok(pids);
  }, `${n} processes of ${file}`, 15_000);
  return pids;
}

/** Whether process `pid` exists. */
export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Wait until `pid` is gone. */
export function gone(pid: number, what = `process ${pid} to exit`): Promise<boolean> {
  return waitFor(() => !alive(pid), what, 15_000);
}

export interface LoadResult {
  ok: number;
  failed: number;
  /** Failures as "status" or the error code, with counts. */
  failures: Record<string, number>;
  /** Response bodies seen, with counts (when `collect` is set). */
  bodies: Record<string, number>;
}

/**
 * Run `clients` keep-alive clients (or, with `fresh`, clients opening a new
 * connection for each request), each sending GET `p` back to back, until
 * stop() is called; then resolve with the counts. Every non-200 answer or
 * connection error is a failure.
 */
export function load(port: number, p: string, clients: number, collect = false, fresh = false): { stop(): Promise<LoadResult>; result: LoadResult } {
  const result: LoadResult = { ok: 0, failed: 0, failures: {}, bodies: {} };
  let running = true;
  const agents: http.Agent[] = [];
  const loops: Promise<void>[] = [];
  for (let i = 0; i < clients; i++) {
    const agent = fresh ? undefined : new http.Agent({ keepAlive: true, maxSockets: 1 });
    if (agent !== undefined) agents.push(agent);
    loops.push((async () => {
      while (running) {
        try {
          const r = await getWith(port, p, agent);
          if (r.status === 200) {
            result.ok++;
            if (collect) result.bodies[r.body] = (result.bodies[r.body] ?? 0) + 1;
          } else {
            result.failed++;
            result.failures[String(r.status)] = (result.failures[String(r.status)] ?? 0) + 1;
          }
        } catch (e) {
          result.failed++;
          const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
          result.failures[code] = (result.failures[code] ?? 0) + 1;
        }
      }
    })());
  }
  return {
    result,
    async stop() {
      running = false;
      await Promise.all(loops);
      for (const a of agents) a.destroy();
      return result;
    },
  };
}

/** Wait until `n` requests have been counted by `result` (progress under load). */
export function progressed(result: LoadResult, n: number): Promise<boolean> {
  const start = result.ok + result.failed;
  return waitFor(() => result.ok + result.failed >= start + n, `${n} more requests`, 20_000);
}
