/**
 * Test harness for the application layer: the real main-side spawn function as
 * AppHost, a log that records lines, a minimal front HTTP server standing in
 * for the router (it builds AppRequests and calls AppTarget.serve), a plain
 * HTTP client, and polling with deadlines.
 */
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { AppHost, AppRequest, AppTarget, AppUpgrade } from '../../src/apps/types.ts';
import { AppManager, type AppManagerOptions } from '../../src/apps/manager.ts';
import { spawnApp } from '../../src/main/spawn.ts';
import { createLogger, type Logger } from '../../src/runtime/log.ts';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const PYTHON = '/usr/bin/python3';
export const PYTHON_MODULES = [{ type: 'python', version: '3.11.2', lib: PYTHON }];

export interface Recorder {
  log: Logger;
  lines: string[];
  /** Raw output of application processes (stdout and stderr). */
  output: string[];
  text(): string;
}

export function recorder(): Recorder {
  const lines: string[] = [];
  const output: string[] = [];
  const log = createLogger((l) => {
    lines.push(l);
    if (process.env.JUNCTION_TEST_VERBOSE) process.stderr.write(l);
  });
  return { log, lines, output, text: () => lines.join('') + output.join('') };
}

/** A fresh short run directory (socket paths must stay under 108 bytes). */
export function runDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'jt-'));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * AppHost over the real spawnApp, as main provides it (minus the IPC hop):
 * exits are reported to `onExit` (the manager's processExited).
 */
export function realHost(dir: string, rec: Recorder): AppHost & { onExit?: (pid: number, code: number | null, signal: string | null) => void; children: Map<number, ChildProcess> } {
  const children = new Map<number, ChildProcess>();
  const host = {
    children,
    onExit: undefined as undefined | ((pid: number, code: number | null, signal: string | null) => void),
    async spawn(spec: Parameters<AppHost['spawn']>[0]) {
      const { child, pid, socket } = await spawnApp(spec, {
        runDir: dir,
        log: rec.log,
        output: (c) => {
          c.stdout?.on('data', (d: Buffer) => rec.output.push(d.toString()));
          c.stderr?.on('data', (d: Buffer) => {
            rec.output.push(d.toString());
            if (process.env.JUNCTION_TEST_VERBOSE) process.stderr.write(d);
          });
        },
      });
      children.set(pid, child);
      const report = (code: number | null, signal: string | null) => {
        children.delete(pid);
        if (signal) rec.log.alert(`app process ${pid} exited on signal ${signal}`);
        else rec.log.notice(`app process ${pid} exited with code ${code}`);
        // Main reports over IPC: a later turn of the event loop.
        setImmediate(() => host.onExit?.(pid, code, signal));
      };
      if (child.exitCode !== null || child.signalCode !== null) report(child.exitCode, child.signalCode);
      else child.once('exit', report);
      return { pid, socket };
    },
    kill(pid: number, signal?: NodeJS.Signals) {
      try { process.kill(pid, signal ?? 'SIGTERM'); } catch { /* gone */ }
    },
  };
  return host;
}

export interface Harness {
  manager: AppManager;
  host: ReturnType<typeof realHost>;
  rec: Recorder;
  front: Front;
  /** Apply an applications object and route `/…` of the front server to app `name` (default: the only app). */
  apply(apps: Record<string, unknown>, route?: (req: http.IncomingMessage) => { app: string; target?: string }): Promise<void>;
  close(): Promise<void>;
}

export async function harness(opts: Partial<AppManagerOptions> = {}): Promise<Harness> {
  const dir = runDir();
  const rec = recorder();
  const host = realHost(dir.path, rec);
  const manager = new AppManager(host, rec.log, { modules: PYTHON_MODULES, killTimeout: 2000, ...opts });
  host.onExit = (pid, code, signal) => manager.processExited(pid, code, signal);
  let routeFn: (req: http.IncomingMessage) => { app: string; target?: string } = () => ({ app: '' });
  const front = await frontServer((req) => {
    const { app, target } = routeFn(req);
    return manager.target(app, target);
  });
  return {
    manager, host, rec, front,
    async apply(apps, route) {
      const tx = await manager.prepare(apps);
      tx.commit();
      const only = Object.keys(apps)[0];
      routeFn = route ?? (() => ({ app: only }));
    },
    async close() {
      await manager.shutdown(false);
      await front.close();
      dir.remove();
    },
  };
}

export interface Front {
  port: number;
  url: string;
  close(): Promise<void>;
}

const ERROR_PAGE = (s: number) => `<!DOCTYPE html><title>Error ${s}</title><p>Error ${s}.\r\n`;

/** A stand-in for the router: every request goes to `resolve(req)`; 404 when it gives nothing. */
export async function frontServer(resolve: (req: http.IncomingMessage) => AppTarget | undefined): Promise<Front> {
  const server = http.createServer((req, res) => {
    const target = resolve(req);
    if (!target) {
      res.writeHead(404).end();
      return;
    }
    target.serve(appRequest(req, res));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const target = resolve(req);
    if (!target?.upgrade) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const r = appRequest(req, undefined as unknown as http.ServerResponse);
    const u: AppUpgrade = { ...r, socket, head } as unknown as AppUpgrade;
    target.upgrade(u);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function appRequest(req: http.IncomingMessage, res: http.ServerResponse): AppRequest {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  // Percent-decoded into a byte string (one char per byte) and dot segments removed, as the router does.
  const path = normalise(rawPath.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))));
  const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/\.$/, '').toLowerCase();
  return {
    req, res, target, path,
    query: q < 0 ? '' : target.slice(q + 1),
    remoteAddr: req.socket.remoteAddress ?? '',
    localAddr: req.socket.localAddress ?? '',
    localPort: String(req.socket.localPort ?? ''),
    serverName: host || 'localhost',
    tls: false,
    rawHeaders: req.rawHeaders,
    fail(status: number) {
      if (res.headersSent) { res.destroy(); return; }
      const body = ERROR_PAGE(status);
      res.writeHead(status, { 'Content-Type': 'text/html', 'Content-Length': body.length });
      res.end(body);
    },
  };
}

function normalise(path: string): string {
  const out: string[] = [];
  for (const seg of path.split('/').slice(1)) {
    if (seg === '.') continue;
    if (seg === '..') { out.pop(); continue; }
    out.push(seg);
  }
  const last = path.split('/').pop();
  return '/' + out.join('/') + (last === '.' || last === '..' ? '/' : '');
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  /** The response ended normally (not cut short). */
  complete: boolean;
}

/** One HTTP request on a fresh connection; resolves also when the server cuts the body short. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string> | string[]; body?: Buffer | string; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers as http.OutgoingHttpHeaders, agent: opts.agent ?? false });
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      const done = (complete: boolean) => {
        const body = Buffer.concat(parts);
        resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body, text: body.toString('latin1'), complete });
      };
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => done(false));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function json<T = any>(url: string, opts?: Parameters<typeof request>[1]): Promise<T> {
  const r = await request(url, opts);
  if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text}`);
  return JSON.parse(r.body.toString('utf8')) as T;
}

/** Poll `fn` until it returns a truthy value; throws after `ms`. */
export async function waitFor<T>(fn: () => T | Promise<T>, ms = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether a process exists. */
export function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
