/**
 * Test harness for the `php` type: runs real php-cgi processes the way main
 * starts application processes (a bound, listening Unix socket handed over as
 * fd 3, moved to fd 0 by the launch command of PhpApp.spawnSpec()), and an
 * HTTP server standing in for the router and the pool: it builds the
 * AppRequest, keeps a one-process pool (one request at a time, a new process
 * when the old one is gone) and dispatches through PhpConnection, as the pool does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PhpApp, PhpConnection, type PhpAppConfig } from '../../src/apps/php.ts';
import type { AppHost, AppRequest, AppSpawnResult, AppSpawnSpec } from '../../src/apps/types.ts';
import type { Exchange } from '../../src/apps/exchange.ts';
import type { FastCgiConnection } from '../../src/apps/transport/fastcgi.ts';
import { splitTarget } from '../../src/router/uri.ts';
import { errorPageBody, ERROR_PAGE_TYPE } from '../../src/router/errors.ts';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'php');
export const WWW = path.join(FIXTURES, 'www');

/** Poll `fn` until it returns a truthy value or `ms` pass. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, ms = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface PipeHandle { fd: number; listen(backlog: number): number; setBlocking(b: boolean): number; close(): void }

/** Main's side of a process start, reduced to what php needs: socket on fd 3, exec, exit tracking. */
export class TestHost implements AppHost {
  readonly dir: string;
  readonly children = new Map<number, ChildProcess>();
  readonly exits = new Map<number, { code: number | null; signal: string | null }>();
  readonly output: string[] = [];
  #seq = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  async spawn(spec: AppSpawnSpec): Promise<AppSpawnResult> {
    const socket = path.join(this.dir, `app.${++this.#seq}.sock`);
    const tmp = `${socket}.tmp`;
    const h = (net as unknown as { _createServerHandle(p: string, port: number, at: number, fd: undefined, flags: number): PipeHandle | number })
      ._createServerHandle(tmp, -1, -1, undefined, 0);
    if (typeof h === 'number') throw new Error(`bind ${tmp} failed: ${h}`);
    h.listen(511);
    h.setBlocking(true);
    // Closing a bound pipe handle unlinks its path: rename first, as main does.
    fs.renameSync(tmp, socket);
    let child: ChildProcess;
    try {
      child = spawn(spec.executable, spec.arguments, {
        cwd: spec.cwd, env: { ...spec.env, LISTEN_FDS: '1' }, stdio: ['ignore', 'pipe', 'pipe', h.fd],
      });
    } finally {
      h.close();
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', reject);
    });
    this.children.set(pid, child);
    for (const s of [child.stdout!, child.stderr!]) s.on('data', (d: Buffer) => this.output.push(d.toString()));
    child.on('exit', (code, signal) => {
      this.exits.set(pid, { code, signal });
      fs.rmSync(socket, { force: true });
    });
    return { pid, socket };
  }

  kill(pid: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    this.children.get(pid)?.kill(signal);
  }

  /** Wait for process `pid` to exit; resolves with its code and signal. */
  waitExit(pid: number): Promise<{ code: number | null; signal: string | null }> {
    return waitFor(() => this.exits.get(pid), `exit of ${pid}`);
  }
}

export interface Served {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  /** true when the response ended early (connection closed mid-body). */
  aborted: boolean;
}

/** A running php app behind a minimal router. */
export class PhpServer {
  readonly app: PhpApp;
  readonly host: TestHost;
  readonly logs: string[] = [];
  readonly server: http.Server;
  port = 0;
  process: { pid: number; connection: FastCgiConnection; php: PhpConnection } | undefined;
  /** Every process started, in order. */
  readonly pids: number[] = [];
  #queue: Array<() => void> = [];
  #busy = false;
  #starting: Promise<void> | undefined;
  target: string | undefined;
  /** Called with each request before it is queued (to tamper with it in a test). */
  onRequest: ((r: AppRequest) => void) | undefined;

  constructor(conf: PhpAppConfig, dir: string, target?: string) {
    this.host = new TestHost(dir);
    this.app = new PhpApp('php-test', conf, { writeLog: (l) => { this.logs.push(l); }, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    this.target = target;
    this.server = http.createServer({ requireHostHeader: false, maxHeaderSize: 256 * 1024 }, (req, res) => this.#handle(req, res));
  }

  /** Start the first process and listen on 127.0.0.1. */
  async start(): Promise<this> {
    await this.#ensureProcess();
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async #ensureProcess(): Promise<void> {
    if (this.process && !this.process.connection.closed) return;
    this.#starting ??= (async () => {
      // The pool's order: spawn, then connect (prepare + FastCGI readiness); kill on failure.
      const { pid, socket } = await this.host.spawn(this.app.spawnSpec());
      try {
        const php = await PhpConnection.connect(this.app, pid, socket);
        this.process = { pid, connection: php.fcgi, php };
        this.pids.push(pid);
      } catch (e) {
        this.host.kill(pid, 'SIGKILL');
        throw e;
      }
    })().finally(() => { this.#starting = undefined; });
    await this.#starting;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const split = splitTarget(req.url ?? '/');
    const sock = req.socket;
    const hostField = req.headers.host ?? '';
    let serverName = hostField.replace(/:\d*$/, '').toLowerCase().replace(/\.$/, '');
    if (serverName === '') serverName = 'localhost';
    const r: AppRequest = {
      req, res,
      target: req.url ?? '/',
      path: split?.path ?? '/',
      query: split?.query ?? '',
      remoteAddr: sock.remoteAddress ?? '',
      localAddr: sock.localAddress ?? '',
      localPort: String(sock.localPort ?? ''),
      serverName,
      tls: false,
      rawHeaders: req.rawHeaders,
      fail(status: number) {
        if (res.headersSent) { res.destroy(); return; }
        const body = errorPageBody(status);
        res.writeHead(status, { 'Content-Type': ERROR_PAGE_TYPE, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      },
    };
    this.onRequest?.(r);
    this.#queue.push(() => void this.#run(r));
    this.#next();
  }

  #next(): void {
    if (this.#busy) return;
    const job = this.#queue.shift();
    if (!job) return;
    this.#busy = true;
    job();
  }

  async #run(r: AppRequest): Promise<void> {
    const done = () => { this.#busy = false; this.#next(); };
    try {
      await this.#ensureProcess();
    } catch (e) {
      this.logs.push(`start failed: ${(e as Error).message}`);
      r.fail(503);
      done();
      return;
    }
    const names = Object.keys(this.app.conf.targets ?? {});
    const index = this.target === undefined ? 0 : names.indexOf(this.target);
    if (index < 0) { r.fail(404); done(); return; }
    let finished = false;
    const ex: Exchange = {
      r, upgrade: undefined, target: index, state: undefined,
      activity() {}, tunnel() {},
      fail: (status) => r.fail(status),
      finish: () => { if (!finished) { finished = true; done(); } },
      requeue: () => false,
    };
    this.process!.php.dispatch(ex);
  }

  /** One request to this server. */
  request(pathAndQuery: string, opts: http.RequestOptions & { body?: string | Buffer; chunks?: Buffer[] } = {}): Promise<Served> {
    return new Promise((resolve, reject) => {
      const headers = { ...(opts.headers as Record<string, string | number | string[]> | undefined) };
      if (opts.body !== undefined && !Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) {
        headers['Content-Length'] = Buffer.byteLength(opts.body);
      }
      const req = http.request({ host: '127.0.0.1', port: this.port, path: pathAndQuery, agent: false, ...opts, headers }, (res) => {
        const chunks: Buffer[] = [];
        let aborted = false;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('aborted', () => { aborted = true; });
        res.on('error', () => { aborted = true; });
        res.on('close', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body, text: body.toString('utf8'), aborted: aborted || !res.complete });
        });
      });
      req.on('error', reject);
      if (opts.chunks) {
        for (const c of opts.chunks) req.write(c);
        req.end();
      } else {
        req.end(opts.body);
      }
    });
  }

  /** GET a path and parse the JSON body. */
  async json<T = Record<string, unknown>>(pathAndQuery: string, opts: http.RequestOptions & { body?: string | Buffer } = {}): Promise<T> {
    const r = await this.request(pathAndQuery, opts);
    if (r.status !== 200) throw new Error(`${pathAndQuery}: status ${r.status}: ${r.text}`);
    return JSON.parse(r.text) as T;
  }

  /** Stop serving: close the connection, SIGTERM the processes, wait for them to exit. */
  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
    this.process?.connection.close();
    for (const [pid, child] of this.host.children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await this.host.waitExit(pid);
      }
    }
  }
}

/** A fresh temporary directory (removed by the caller). */
export function tempDir(prefix = 'junction-php-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
