/**
 * Junction itself: `bin/junction --no-daemon` with its control socket, state,
 * log, pid file and temp files in a directory of the run, configured over the
 * control socket with PUT /config like any Unit deployment.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { request } from '../http.ts';
import { lastLine, setAffinity, start, stop, treeRss, waitFor, type Proc, type TreeRss } from '../proc.ts';
import type { RunEnv } from '../types.ts';

/** A configuration with nothing in it: no listener, no application process. */
export const EMPTY_CONFIG = { listeners: {}, applications: {} };

/** A control API answer, with the time it took as seen by the client, in ms. */
export interface ApiReply { status: number; body: string; ms: number }

/** Alert and error lines (without timestamp and pid) and JavaScript exceptions' first lines in `text`. */
function errorLines(text: string): string[] {
  return text.split('\n')
    .filter((l) => /\[(alert|error|crit|emerg)\]|^\w*Error\b/.test(l))
    .map((l) => lastLine(l.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+ /, '$1 '), 120));
}

/** One running Junction daemon. */
export class JunctionDaemon {
  readonly dir: string;
  readonly control: string;
  readonly log: string;
  readonly proc: Proc;

  private constructor(dir: string, proc: Proc) {
    this.dir = dir;
    this.control = path.join(dir, 'control.sock');
    this.log = path.join(dir, 'unit.log');
    this.proc = proc;
  }

  /** Start the daemon in the foreground and wait (up to 20 s) until GET /config answers 200. */
  static async start(env: RunEnv): Promise<JunctionDaemon> {
    const dir = fs.mkdtempSync(path.join(env.tmp, 'junction-'));
    fs.chmodSync(dir, 0o755); // traversable by the routers, which run as nobody when started as root
    const bin = path.join(env.root, 'bin', 'junction');
    const args = [bin, '--no-daemon', '--control', `unix:${path.join(dir, 'control.sock')}`,
      '--statedir', path.join(dir, 'state'), '--log', path.join(dir, 'unit.log'),
      '--pid', path.join(dir, 'unit.pid'), '--tmpdir', dir];
    fs.mkdirSync(path.join(dir, 'state'));
    const p = start('junction', process.execPath, args, { cpus: env.serverCpus, cwd: dir });
    const j = new JunctionDaemon(dir, p);
    try {
      await waitFor(async () => (await j.api('GET', '/config', undefined, 2000)).status === 200, 'the control socket', 20_000, p);
    } catch (e) {
      const exited = !j.alive();
      const log = j.lastError();
      await stop(p);
      const why = exited ? (e as Error).message.replace(/:.*$/s, '') : 'no answer on the control socket within 20 s';
      throw new Error(`${why}${log ? `; log: ${log}` : ''}`);
    }
    return j;
  }

  /** Whether main is still running. */
  alive(): boolean {
    return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  /** One control API request; `body` is JSON-encoded unless it is a string. */
  async api(method: string, p: string, body?: unknown, timeoutMs = 60_000): Promise<ApiReply> {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const t0 = performance.now();
    const r = await request({ socketPath: this.control, method, path: p, body: data, timeoutMs });
    return { status: r.status, body: r.body.toString('utf8'), ms: performance.now() - t0 };
  }

  /**
   * PUT /config; throws unless it is 200, with Junction's answer and the
   * first error it logged meanwhile (the most specific one, e.g. the
   * application's own, before the generic "failed to apply").
   */
  async configure(config: unknown): Promise<ApiReply> {
    const from = this.logSize();
    const r = await this.api('PUT', '/config', config);
    if (r.status !== 200) {
      let detail = r.body.trim();
      try {
        const j = JSON.parse(r.body) as { error?: string; detail?: string };
        detail = [j.error, j.detail].filter(Boolean).join(' ');
      } catch { /* not JSON */ }
      // A 400 is a validation error: its detail says it all.
      const log = r.status === 400 ? '' : this.errorSince(from) || this.lastError();
      throw new Error(`PUT /config ${r.status}: ${detail}${log ? `; log: ${log}` : ''}`);
    }
    return r;
  }

  /** Current size of the log file, in bytes (0 when it does not exist yet). */
  logSize(): number {
    try { return fs.statSync(this.log).size; } catch { return 0; }
  }

  /** The first error line logged after byte `offset` of the log, or ''. */
  errorSince(offset: number): string {
    let text = '';
    try { text = fs.readFileSync(this.log).subarray(offset).toString('utf8'); } catch { return ''; }
    return errorLines(text)[0] ?? '';
  }

  /**
   * The last error of the daemon's log (an alert or error line without its
   * timestamp and pid, or a JavaScript exception's first line), or ''.
   */
  lastError(): string {
    let text = '';
    try { text = fs.readFileSync(this.log, 'utf8'); } catch { /* not yet written */ }
    text += `\n${this.proc.output()}`;
    return errorLines(text).pop() ?? '';
  }

  /**
   * Move every process of the daemon to the CPUs of the taskset list `cpus`
   * (router and application processes it starts later inherit them).
   */
  setCpus(cpus: string): void {
    setAffinity(this.proc.pid, cpus);
  }

  /** Resident memory of main and all its descendants. */
  rss(): TreeRss {
    return treeRss(this.proc.pid);
  }

  /** Stop the daemon (SIGTERM, then SIGKILL to its process group). */
  stop(): Promise<void> {
    return stop(this.proc);
  }
}

/** Keeps one Junction daemon for the whole run, starting it again if a scenario made it exit. */
export class JunctionKeeper {
  private env: RunEnv;
  private daemon?: JunctionDaemon;
  private failure = '';
  private say: (line: string) => void;

  constructor(env: RunEnv, say: (line: string) => void) {
    this.env = env;
    this.say = say;
  }

  /** The running daemon; throws the start failure (once failed, for good) when it does not start. */
  async get(): Promise<JunctionDaemon> {
    if (this.daemon?.alive()) return this.daemon;
    if (this.daemon) this.say('  Junction exited; starting it again');
    this.daemon = undefined;
    if (this.failure) throw new Error(this.failure);
    try {
      this.daemon = await JunctionDaemon.start(this.env);
      return this.daemon;
    } catch (e) {
      this.failure = `Junction did not start: ${(e as Error).message}`;
      throw new Error(this.failure);
    }
  }

  /** Put back an empty configuration: the next server then runs beside an idle Junction. */
  async reset(): Promise<void> {
    if (this.daemon?.alive()) await this.daemon.configure(EMPTY_CONFIG).catch(() => {});
  }

  /** Stop the daemon, if it runs. */
  async stop(): Promise<void> {
    await this.daemon?.stop();
  }
}
