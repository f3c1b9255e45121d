/**
 * Test harness: runs the real `junction` daemon in the foreground on a
 * temporary directory, with its control socket there, and talks to it with
 * real clients (node:http over the Unix control socket and over TCP).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 'junction');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

export interface Response { status: number; headers: http.IncomingHttpHeaders; body: string; raw: Buffer }

/** Poll `fn` until it returns a truthy value or `ms` pass; throws with `what` on timeout. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, ms = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A TCP port that was free a moment ago. Chosen at random below Linux's
 * ephemeral range (32768–60999), so it cannot be taken meanwhile by the
 * outgoing connections of clients running in parallel, as port 0's choice can.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** One HTTP request; resolves with status, headers and body. */
export function request(opts: http.RequestOptions & { body?: string | Buffer }): Promise<Response> {
  return new Promise((resolve, reject) => {
    const headers = { ...(opts.headers as Record<string, string | number> | undefined) };
    if (opts.body !== undefined && !Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) {
      headers['Content-Length'] = Buffer.byteLength(opts.body);
    }
    const req = http.request({ agent: false, ...opts, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: raw.toString('utf8'), raw });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** GET http://127.0.0.1:port/path with optional headers. */
export function get(port: number, p: string, headers: Record<string, string> = {}): Promise<Response> {
  return request({ host: '127.0.0.1', port, path: p, headers });
}

/**
 * As root, applications default to `--user nobody` (as Unit), which could not
 * read a checkout under a private home directory: tests run them as the
 * current user instead.
 */
const USER_ARGS = process.getuid?.() === 0 ? ['--user', os.userInfo().username] : [];

export interface StartOptions {
  /** Reuse a state directory (restart tests). */
  dir?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Run the daemon as this user (the test runs as root): its directory is given to it. */
  as?: { uid: number; gid: number };
}

export class Junction {
  readonly dir: string;
  readonly control: string;
  readonly log: string;
  readonly statedir: string;
  readonly pidFile: string;
  proc?: ChildProcess;
  /** What main printed on stderr so far (in the foreground, Node's own warnings land here). */
  stderr = '';

  private constructor(dir: string) {
    this.dir = dir;
    this.control = path.join(dir, 'control.sock');
    this.log = path.join(dir, 'unit.log');
    this.statedir = path.join(dir, 'state');
    this.pidFile = path.join(dir, 'unit.pid');
  }

  /** Start the daemon (`--no-daemon`) and wait until the control socket answers. */
  static async start(o: StartOptions = {}): Promise<Junction> {
    const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'junction-test-'));
    const j = new Junction(dir);
    await j.run(o);
    return j;
  }

  async run(o: StartOptions = {}): Promise<void> {
    const args = ['--no-daemon', '--control', `unix:${this.control}`, '--log', this.log, '--statedir', this.statedir,
      '--pid', this.pidFile, '--tmpdir', this.dir, ...(o.as ? [] : USER_ARGS), ...(o.args ?? [])];
    if (o.as) fs.chownSync(this.dir, o.as.uid, o.as.gid);
    const proc = spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...(o.as ? { HOME: this.dir } : {}), ...o.env },
      ...(o.as ?? {}),
    });
    this.proc = proc;
    this.stderr = '';
    proc.stderr!.on('data', (c) => { this.stderr += c; });
    const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`junction exited (${code}): ${this.stderr}`))));
    await Promise.race([exited, waitFor(async () => (await this.api('GET', '/config')).status === 200, 'control socket', 20_000)]);
    exited.catch(() => {});
  }

  /** A control API request; body is sent as given (string) or JSON-encoded (other values). */
  api(method: string, p: string, body?: unknown): Promise<Response & { json: any }> {
    const data = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    return request({ socketPath: this.control, method, path: p, body: data, headers: data !== undefined ? { 'Content-Length': Buffer.byteLength(data) } : {} })
      .then((r) => {
        let json: unknown;
        try { json = JSON.parse(r.body); } catch { json = undefined; }
        return { ...r, json };
      });
  }

  /** PUT a whole configuration and assert success. */
  async configure(config: unknown): Promise<void> {
    const r = await this.api('PUT', '/config', config);
    if (r.status !== 200) throw new Error(`configuration rejected (${r.status}): ${r.body}\n${this.logText()}`);
  }

  logText(): string {
    try { return fs.readFileSync(this.log, 'utf8'); } catch { return ''; }
  }

  /** Pids of this daemon's processes whose command line contains `title`. */
  pidsOf(title: string): number[] {
    const out: number[] = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
        if (!cmd.includes(title)) continue;
        if (this.isDescendant(Number(d))) out.push(Number(d));
      } catch { /* gone */ }
    }
    return out;
  }

  private isDescendant(pid: number): boolean {
    const root = this.proc?.pid;
    for (let p = pid, i = 0; p > 1 && i < 20; i++) {
      if (p === root) return true;
      try {
        const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
        p = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      } catch { return false; }
    }
    return false;
  }

  /** Send a signal to main and wait for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const done = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
    p.kill(signal);
    return done;
  }

  /** Stop and remove the temporary directory. */
  async cleanup(): Promise<void> {
    await this.stop('SIGTERM');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
