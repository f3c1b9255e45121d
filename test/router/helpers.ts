/**
 * Test harness for the router: a RouterHost that binds real sockets the way
 * main does, an application manager without applications, and raw HTTP
 * helpers that show exactly what a client receives.
 */
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Router } from '../../src/router/router.ts';
import type { RouterHost } from '../../src/router/host.ts';
import type { AppManagerLike, AppTransaction, AppTarget } from '../../src/apps/types.ts';
import type { Logger } from '../../src/runtime/log.ts';
import { parseListenerName } from '../../src/config/address.ts';

type Handle = { close(cb?: () => void): void };
const createHandle = (net as unknown as {
  _createServerHandle(address: string | null, port: number, addressType: number, fd?: number, flags?: number): Handle | number;
})._createServerHandle;

/** Logger keeping its lines. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (m: string) => { lines.push(`[${level}] ${m}`); };
  return { lines, alert: at('alert'), error: at('error'), warn: at('warn'), notice: at('notice'), info: at('info'), debug: () => {} };
}

/** A RouterHost binding sockets in-process (like main's sockets.ts). */
export class TestHost implements RouterHost {
  log = memoryLogger();
  apps = { spawn: async () => { throw new Error('no spawning in tests'); }, kill: () => {} };
  tmpdir = os.tmpdir();
  handles = new Map<string, Handle>();
  released: string[] = [];

  async listen(address: string): Promise<unknown> {
    const have = this.handles.get(address);
    if (have) return have;
    const a = parseListenerName(address);
    if (!a) throw new Error(`The listener address "${address}" is invalid.`);
    let h: Handle | number;
    if (a.kind === 'unix') {
      h = createHandle(a.abstract ? '\0' + a.path : a.path, -1, -1, undefined, 0);
    } else {
      h = createHandle(a.wildcard ? (a.family === 6 ? '::' : '0.0.0.0') : a.host, a.port, a.family, undefined, a.family === 6 ? 1 : 0);
    }
    if (typeof h === 'number') throw new Error(`bind("${address}") failed (${h})`);
    this.handles.set(address, h);
    return h;
  }

  release(address: string): void {
    this.released.push(address);
    this.handles.delete(address);
    const a = parseListenerName(address);
    if (a?.kind === 'unix' && !a.abstract) fs.rmSync(a.path, { force: true });
  }
}

/** Applications registered for tests: name → target. */
export class TestApps implements AppManagerLike {
  targets = new Map<string, AppTarget>();
  prepared = 0;
  committed = 0;
  aborted = 0;
  async prepare(applications: Record<string, unknown>): Promise<AppTransaction> {
    this.prepared++;
    const names = new Set(Object.keys(applications));
    return {
      target: (name, target) => (names.has(name) ? this.targets.get(target ? `${name}/${target}` : name) : undefined),
      commit: () => { this.committed++; },
      abort: () => { this.aborted++; },
    };
  }
  target(name: string, target?: string): AppTarget | undefined {
    return this.targets.get(target ? `${name}/${target}` : name);
  }
  status() { return {}; }
  async restart(): Promise<void> {}
  processExited(): void {}
  async shutdown(): Promise<void> {}
}

/** A TCP port that was free a moment ago. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface Started {
  router: Router;
  host: TestHost;
  apps: TestApps;
  port: number;
  listener: string;
  stop(): Promise<void>;
}

/**
 * Start a router with `config`; the listener `*:8080` of the spec's examples
 * becomes `127.0.0.1:<free port>`. `config.listeners` defaults to one listener
 * passing to `routes`.
 */
export async function start(config: Record<string, unknown>, apps: AppManagerLike = new TestApps()): Promise<Started> {
  const port = await freePort();
  const listener = `127.0.0.1:${port}`;
  const c = { ...config };
  if (c.listeners === undefined) c.listeners = { [listener]: { pass: 'routes' } };
  else {
    const l = c.listeners as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(l)) out[k === '*:8080' ? listener : k] = l[k];
    c.listeners = out;
  }
  const host = new TestHost();
  const router = new Router(host, apps);
  await router.apply(c);
  return {
    router, host, apps: apps as TestApps, port, listener,
    stop: () => router.shutdown(false),
  };
}

/** Send raw bytes and collect everything until the server closes the connection. */
export function raw(port: number, data: string | Buffer | Array<string | Buffer>, target: string | number = '127.0.0.1', end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = typeof port === 'number' && port > 0 ? net.connect(port, target as string) : net.connect(target as string);
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('error', (e) => (chunks.length ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(e)));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    for (const d of Array.isArray(data) ? data : [data]) s.write(typeof d === 'string' ? Buffer.from(d, 'latin1') : d);
    if (end) s.end();
  });
}

/** `GET` (or other) request with `Connection: close`, Host localhost unless given. */
export function request(port: number, method: string, target: string, headers: string[] = [], body = ''): Promise<string> {
  const hasHost = headers.some((h) => /^host:/i.test(h));
  const lines = [`${method} ${target} HTTP/1.1`, ...(hasHost ? [] : ['Host: localhost']), ...headers, 'Connection: close'];
  return raw(port, lines.join('\r\n') + '\r\n\r\n' + body);
}

export interface Parsed {
  statusLine: string;
  status: number;
  headers: Array<[string, string]>;
  body: string;
  get(name: string): string | undefined;
  all(name: string): string[];
}

/** Parse one or more responses from raw text (Content-Length or chunked bodies; `head` = no bodies). */
export function parse(text: string, head = false): Parsed[] {
  const out: Parsed[] = [];
  let rest = text;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`incomplete header: ${JSON.stringify(rest)}`);
    const lines = rest.slice(0, end).split('\r\n');
    rest = rest.slice(end + 4);
    const statusLine = lines[0];
    const headers = lines.slice(1).map((l): [string, string] => {
      const i = l.indexOf(':');
      return [l.slice(0, i), l.slice(i + 1).trim()];
    });
    const get = (n: string) => headers.find((h) => h[0].toLowerCase() === n.toLowerCase())?.[1];
    const all = (n: string) => headers.filter((h) => h[0].toLowerCase() === n.toLowerCase()).map((h) => h[1]);
    let body = '';
    const status = Number(statusLine.slice(9, 12));
    if (!head && status !== 304 && status !== 204) {
      const cl = get('content-length');
      if (cl !== undefined) {
        body = rest.slice(0, Number(cl));
        rest = rest.slice(Number(cl));
      } else if (get('transfer-encoding') === 'chunked') {
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, nl), 16);
          rest = rest.slice(nl + 2);
          if (n === 0) { rest = rest.slice(2); break; }
          body += rest.slice(0, n);
          rest = rest.slice(n + 2);
        }
      } else {
        body = rest;
        rest = '';
      }
    }
    out.push({ statusLine, status, headers, body, get, all });
  }
  return out;
}

/** Parse exactly one response. */
export function one(text: string, head = false): Parsed {
  const r = parse(text, head);
  if (r.length !== 1) throw new Error(`expected one response, got ${r.length}: ${JSON.stringify(text)}`);
  return r[0];
}

/** A fresh temporary directory. */
export function tmpdir(prefix = 'junction-router-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Wait until `file` has at least `n` lines; resolves with them (watching, no fixed sleep). */
export async function waitLines(file: string, n: number): Promise<string[]> {
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const lines = text.split('\n').filter((l) => l !== '');
    if (lines.length >= n) return lines;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Resolve once `cond()` holds (polled on the event loop; no fixed sleeps). */
export async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((resolve) => setImmediate(resolve));
}
