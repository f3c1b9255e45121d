/**
 * The process pool of one application generation (spec/applications.md §2.3,
 * §2.4, §1.5): a FIFO of requests, the processes serving it, and Unit's
 * start/idle rules.
 *
 *   canStart  = processes + pending < max && pending < maxPending
 *   needStart = active > capacity + pending || spare > idle + pending
 *
 * `processes` counts ready processes (pending = starting), `active` the
 * requests accepted and not finished (queued ones included), `capacity` the
 * request contexts of ready processes (threads; 1 for HTTP apps), `idle` the
 * ready processes without a request. Idle processes beyond `spare` stop after
 * `idle_timeout`; the first `spare` idle ones are kept ("spare list").
 */
import { performance } from 'node:perf_hooks';
import type { AppHandoff, AppHost, AppRequest, AppStatus, AppUpgrade } from './types.ts';
import type { Logger } from '../runtime/log.ts';
import { writeRawError, type AppConnection, type Exchange } from './exchange.ts';
import type { AppLaunch, PoolConfig } from './launch.ts';
import { HttpConnection } from './transport/http.ts';
import { HandoffChannel, HeldConnection, markRefused } from './transport/handoff.ts';
import { AppProtoConnection } from './transport/appproto.ts';
import { PhpConnection } from './php.ts';

/** What a pool needs from its manager. */
export interface PoolEnv {
  host: AppHost;
  log: Logger;
  /** pid → process, so that exits reported by main reach the right pool. */
  track(pid: number, p: Proc): void;
  untrack(pid: number): void;
  /** Grace period between SIGTERM and SIGKILL, ms. */
  killTimeout: number;
  /** The pool has no process left and will get no more work (retired or shut down). */
  gone(pool: Pool): void;
}

const IDLE_NONE = 0, IDLE_SPARE = 1, IDLE_OVERFLOW = 2;
/** A process exiting within this many ms of being ready, unused, counts as an early exit. */
const EARLY_EXIT = 2000;
/** A request running this long (ms) is slow: no other request is made to wait behind it at its process. */
const SLOW_REQUEST = 50;
const EARLY_EXITS_BEFORE_BACKOFF = 3;
const MAX_BACKOFF = 30_000;

/** One application process as the pool sees it. */
export class Proc {
  readonly pool: Pool;
  state: 'starting' | 'ready' | 'stopping' | 'exited' = 'starting';
  pid = 0;
  conn: AppConnection | null = null;
  /** Requests it takes at once. */
  slots = 1;
  /** Its share of `capacity`. */
  threads = 1;
  /** Requests it runs at once; those up to `slots` beyond this wait in it, in order. */
  parallel = 1;
  inflight = 0;
  /** Requests dispatched to it (limits.requests). */
  served = 0;
  /** In the ready list: takes new requests. */
  accepting = false;
  idle = IDLE_NONE;
  idleSince = 0;
  /** performance.now() when it became ready. */
  readyAt = 0;
  /** performance.now() when it last finished a request, or took one while free: how long its current work has run. */
  progressAt = 0;
  killTimer: NodeJS.Timeout | null = null;

  constructor(pool: Pool) {
    this.pool = pool;
  }
}

/** One request between arrival and the process freeing its slot (the transports' Exchange). */
class Job implements Exchange {
  pool: Pool;
  readonly r: AppRequest;
  readonly upgrade: AppUpgrade | undefined;
  readonly target: number;
  state: unknown = undefined;
  proc: Proc | null = null;
  timer: NodeJS.Timeout | null = null;
  /** The client got its answer (or is gone): counted out of `active`. */
  clientDone = false;
  finished = false;
  failed = false;

  constructor(pool: Pool, r: AppRequest, upgrade: AppUpgrade | undefined, target: number) {
    this.pool = pool;
    this.r = r;
    this.upgrade = upgrade;
    this.target = target;
  }

  activity(): void {
    this.timer?.refresh();
  }

  tunnel(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }

  fail(status: number): void {
    if (this.failed) return;
    this.failed = true;
    if (this.upgrade) writeRawError(this.upgrade.socket, status);
    // After the head, fail() closes the connection; body bytes written in this same
    // tick still sit in the corked socket, so let them go out first.
    else if (this.r.res.headersSent) setImmediate(failLater, this.r, status);
    else this.r.fail(status);
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.pool.jobFinished(this);
  }

  requeue(maybeSeen = false): boolean {
    if (this.finished || (maybeSeen && this.requeuedSeen)) return false;
    if (maybeSeen) this.requeuedSeen = true;
    return this.pool.requeue(this);
  }

  /** Times the request went back to the queue because its process was gone. */
  requeued = 0;
  /** It went back once after a process that may have read it died. */
  requeuedSeen = false;

  /** Whether the client is already gone (checked before dispatching a queued request). */
  gone(): boolean {
    if (this.upgrade) return this.upgrade.socket.destroyed;
    const res = this.r.res;
    return res.destroyed || res.writableEnded || Boolean(this.r.req.socket?.destroyed);
  }
}

function failLater(r: AppRequest, status: number): void {
  r.fail(status);
}

function onTimeout(job: Job): void {
  job.timer = null;
  job.pool.timedOut(job);
}

export class Pool {
  readonly name: string;
  readonly launch: AppLaunch;
  readonly conf: PoolConfig;
  readonly #env: PoolEnv;
  /** Every process not yet exited, starting ones included. */
  readonly procs = new Set<Proc>();
  #ready: Proc[] = [];
  #spareIdle: Proc[] = [];
  #overflowIdle: Proc[] = [];
  #queue: (Job | undefined)[] = [];
  #qHead = 0;
  #idleTimer: NodeJS.Timeout | null = null;
  pending = 0;
  processes = 0;
  active = 0;
  capacity = 0;
  /** Draining: no spare processes, processes stop once nothing is left to do. */
  retired = false;
  /** Shut down: nothing starts any more, new requests get 503. */
  stopped = false;
  #gone = false;
  #initializing = false;
  /** Consecutive processes that exited soon after start without serving anything. */
  #earlyExits = 0;
  #backoff: NodeJS.Timeout | null = null;

  constructor(name: string, launch: AppLaunch, env: PoolEnv) {
    this.name = name;
    this.launch = launch;
    this.conf = launch.pool;
    this.#env = env;
  }

  get idle(): number {
    return this.#spareIdle.length + this.#overflowIdle.length;
  }

  get #spare(): number {
    return this.retired ? 0 : this.conf.spare;
  }

  #canStart(): boolean {
    const maxPending = this.conf.spare > 0 ? this.conf.spare : 1;
    return !this.stopped && this.processes + this.pending < this.conf.max && this.pending < maxPending;
  }

  #needStart(): boolean {
    return this.active > this.capacity + this.pending || this.#spare > this.idle + this.pending;
  }

  status(): AppStatus {
    return { processes: { running: this.processes, starting: this.pending, idle: this.idle }, requests: { active: this.active } };
  }

  /** A request for target `target` (index): queue it, hand it to a process, start one if the rules say so. */
  submit(r: AppRequest, target: number, upgrade?: AppUpgrade): void {
    const job = new Job(this, r, upgrade, target);
    if (this.stopped) {
      job.fail(503);
      return;
    }
    this.active++;
    this.#queue.push(job);
    this.#dispatch();
    this.#fill();
  }

  /**
   * Start processes until `spare` are idle, one at a time, each waiting for the
   * previous to be ready (config apply, §2.3). Rejects on the first failure.
   */
  async startInitial(): Promise<void> {
    this.#initializing = true;
    try {
      while (this.#spare > this.idle + this.pending && this.#canStart()) {
        await this.#startOne();
      }
    } finally {
      this.#initializing = false;
    }
  }

  /** Start what the pool rules ask for now, without waiting (restart, replacements). */
  fill(): void {
    this.#fill();
  }

  #fill(): void {
    if (this.#initializing) return;
    while (this.#canStart() && this.#needStart()) this.#startOne().catch(() => {});
  }

  #startOne(): Promise<void> {
    const p = new Proc(this);
    this.procs.add(p);
    this.pending++;
    return this.#spawn(p);
  }

  async #spawn(p: Proc): Promise<void> {
    const env = this.#env;
    const launch = this.launch;
    try {
      // Node apps that may take whole connections get a channel for them (fd 5).
      const channel = launch.handoff && env.host.channelPath !== undefined
        ? await HandoffChannel.connect(env.host.channelPath).catch(() => undefined) : undefined;
      let spawned: Awaited<ReturnType<AppHost['spawn']>>;
      try {
        spawned = await env.host.spawn(channel ? { ...launch.spec, channel: channel.token } : launch.spec);
      } catch (e) {
        channel?.close();
        throw e;
      }
      const { pid, socket } = spawned;
      p.pid = pid;
      env.track(pid, p);
      const lost = () => this.#lost(p);
      let conn: AppConnection;
      if (launch.transport === 'appproto') {
        const c = await AppProtoConnection.connect(socket, { onLost: lost });
        // Capacity is the configured threads; the process may take more at once (ASGI) or
        // queue more, taken in order (WSGI pipelining) — unless limits.timeout must start
        // when a thread takes the request.
        p.threads = Math.min(c.slots, Number.isFinite(launch.slots) ? launch.slots : c.slots);
        p.slots = this.conf.timeout > 0 ? c.slots : c.slots + c.queue;
        p.parallel = c.slots;
        conn = c;
        if (p.state !== 'starting') {
          c.close();
          throw new Error(`"${this.name}" application failed to start`);
        }
      } else if (launch.transport === 'fastcgi') {
        // php-cgi: one request at a time (and some waiting, see PhpConnection.slots); connect() resolves roots and waits for FastCGI answers.
        const c = await PhpConnection.connect(launch.php!, pid, socket, { onLost: lost });
        p.slots = c.slots;
        p.threads = 1;
        conn = c;
        if (p.state !== 'starting' || c.fcgi.closed) {
          c.close();
          throw new Error(`"${this.name}" application failed to start`);
        }
      } else {
        conn = new HttpConnection(socket, lost, channel, pid);
        p.slots = launch.slots;
        p.threads = Number.isFinite(launch.slots) ? launch.slots : 1;
        p.parallel = launch.slots;
      }
      p.conn = conn;
    } catch (e) {
      this.#startFailed(p, e as Error);
      throw e;
    }
    this.pending--;
    this.processes++;
    p.state = 'ready';
    p.readyAt = performance.now();
    env.log.info(`"${this.name}" application started`);
    if (this.stopped || (this.retired && this.#queued() === 0)) {
      // Started for a generation that no longer needs it (restart, abort, shutdown).
      this.#stopProc(p);
    } else {
      p.accepting = true;
      this.#ready.push(p);
      this.capacity += p.threads;
      this.#dispatch();
      this.#flushHandoffs();
      if (p.inflight === 0) this.#procIdle(p);
      this.#fill();
    }
    this.#checkGone();
  }

  #startFailed(p: Proc, e: Error): void {
    const env = this.#env;
    this.pending--;
    if (p.pid && p.state === 'starting') {
      // Started but unusable (no HELLO, connection refused): make sure it is gone; its exit ends it.
      p.state = 'stopping';
      env.host.kill(p.pid, 'SIGKILL');
    } else {
      p.state = 'exited';
      this.procs.delete(p);
    }
    env.log.alert(e?.message ?? String(e));
    env.log.warn(`failed to start application "${this.name}"`);
    if (this.processes === 0) {
      this.#failQueued(503);
      this.#returnHandoffs();
    }
    this.#checkGone();
  }

  #queued(): number {
    return this.#queue.length - this.#qHead;
  }

  #failQueued(status: number): void {
    const q = this.#queue;
    for (let i = this.#qHead; i < q.length; i++) {
      const job = q[i]!;
      job.clientDone = true;
      this.active--;
      job.fail(status);
    }
    this.#queue = [];
    this.#qHead = 0;
  }

  /**
   * The process for the next request: a spare idle one, then the newest idle,
   * then the least busy with room. A request waits at a process that is
   * running all it can at once (php-cgi's waiting requests, WSGI pipelining:
   * `slots` above `parallel`) only once the pool has all the processes it may have (until
   * then it waits for a new one, as in Unit's shared queue), and not behind a
   * request known to be slow (running SLOW_REQUEST ms or more), so that a long
   * request never holds up short ones another process could take.
   */
  #pick(): Proc | undefined {
    if (this.#spareIdle.length) return this.#spareIdle[this.#spareIdle.length - 1];
    if (this.#overflowIdle.length) return this.#overflowIdle[this.#overflowIdle.length - 1];
    const php = this.launch.transport === 'fastcgi';
    const startFirst = this.processes + this.pending < this.conf.max;
    let now = -1;
    let best: Proc | undefined;
    for (const p of this.#ready) {
      if (p.inflight >= p.slots) continue;
      if (p.inflight >= p.parallel) {
        if (startFirst) continue;
        if (php) {
          if (!(p.conn as PhpConnection).canTakeMore()) continue;
        } else {
          if (now < 0) now = performance.now();
          if (now - p.progressAt >= SLOW_REQUEST) continue;
        }
      }
      if (!best || p.inflight < best.inflight) best = p;
    }
    return best;
  }

  #dispatch(): void {
    // The queue is read afresh each turn: a transport may give a request back
    // (requeue(), which dispatches too) from within #assign.
    while (this.#qHead < this.#queue.length) {
      const p = this.#pick();
      if (!p) break;
      const q = this.#queue;
      const job = q[this.#qHead]!;
      q[this.#qHead++] = undefined;
      if (job.gone()) {
        job.clientDone = true;
        this.active--;
        continue;
      }
      this.#assign(job, p);
    }
    const q = this.#queue;
    if (this.#qHead === q.length) {
      this.#queue = [];
      this.#qHead = 0;
    } else if (this.#qHead > 1024 && this.#qHead * 2 > q.length) {
      this.#queue = q.slice(this.#qHead);
      this.#qHead = 0;
    }
  }

  #assign(job: Job, p: Proc): void {
    if (p.idle !== IDLE_NONE) this.#leaveIdle(p);
    if (p.inflight === 0) p.progressAt = performance.now();
    p.inflight++;
    p.served++;
    job.proc = p;
    job.pool = this;
    if (this.conf.requests > 0 && p.served >= this.conf.requests) this.#unready(p);
    if (this.conf.timeout > 0 && !job.upgrade) job.timer = setTimeout(onTimeout, this.conf.timeout, job);
    p.conn!.dispatch(job);
  }

  /** limits.timeout expired: 503 (or close) now; the process keeps the slot until it is done. */
  timedOut(job: Job): void {
    if (job.clientDone || job.finished) return;
    job.fail(503);
    job.clientDone = true;
    this.active--;
    job.proc?.conn?.abandon(job);
    this.#checkGone();
  }

  /**
   * `job` could not be delivered to its process (gone before it saw the request):
   * forget that process and queue the job first in line for another one (as
   * Unit's shared queue would keep it until a live process takes it).
   */
  requeue(job: Job): boolean {
    if (job.clientDone || job.requeued >= 3 || this.stopped) return false;
    job.requeued++;
    if (job.timer) { clearTimeout(job.timer); job.timer = null; }
    const p = job.proc;
    job.proc = null;
    job.state = undefined;
    if (p) {
      p.inflight--;
      p.served--;
      if (p.state === 'ready' && p.inflight === 0) {
        if (!p.accepting) this.#stopProc(p);
        else if (p.idle === IDLE_NONE) this.#procIdle(p);
      }
    }
    if (this.#qHead > 0) this.#queue[--this.#qHead] = job;
    else this.#queue.unshift(job);
    this.#dispatch();
    this.#fill();
    return true;
  }

  jobFinished(job: Job): void {
    if (!job.clientDone) {
      job.clientDone = true;
      this.active--;
    }
    const p = job.proc;
    if (p) {
      p.inflight--;
      p.progressAt = performance.now();
      if (p.state === 'ready') {
        if (!p.accepting) {
          if (p.inflight === 0) this.#stopProc(p);
        } else {
          this.#dispatch();
          if (p.inflight === 0 && p.idle === IDLE_NONE && p.accepting) this.#procIdle(p);
        }
      }
    }
    this.#checkGone();
  }

  /** Stop taking requests on `p` (limits.requests reached, connection lost, shutdown). */
  #unready(p: Proc): void {
    if (!p.accepting) return;
    p.accepting = false;
    const i = this.#ready.indexOf(p);
    if (i >= 0) this.#ready.splice(i, 1);
    this.capacity -= p.threads;
    if (p.idle !== IDLE_NONE) this.#removeIdle(p);
  }

  #procIdle(p: Proc): void {
    if (this.retired && this.#queued() === 0) {
      this.#stopProc(p);
      return;
    }
    if (this.idle < this.#spare) {
      p.idle = IDLE_SPARE;
      this.#spareIdle.push(p);
    } else {
      p.idle = IDLE_OVERFLOW;
      p.idleSince = performance.now();
      this.#overflowIdle.push(p);
      this.#armIdleTimer();
    }
  }

  #leaveIdle(p: Proc): void {
    const wasSpare = p.idle === IDLE_SPARE;
    this.#removeIdle(p);
    // Keep `spare` processes exempt from the idle timeout while others are busy.
    if (wasSpare && this.idle >= this.#spare && this.#overflowIdle.length) {
      const q = this.#overflowIdle.pop()!;
      q.idle = IDLE_SPARE;
      this.#spareIdle.push(q);
    }
  }

  #removeIdle(p: Proc): void {
    const list = p.idle === IDLE_SPARE ? this.#spareIdle : this.#overflowIdle;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    p.idle = IDLE_NONE;
  }

  #armIdleTimer(): void {
    if (this.#idleTimer || this.#overflowIdle.length === 0) return;
    const oldest = this.#overflowIdle[0];
    const delay = Math.max(0, oldest.idleSince + this.conf.idleTimeout - performance.now());
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      this.#onIdleTimer();
    }, delay);
    this.#idleTimer.unref();
  }

  #onIdleTimer(): void {
    const now = performance.now();
    while (this.idle > this.#spare && this.#overflowIdle.length) {
      const p = this.#overflowIdle[0];
      if (now - p.idleSince < this.conf.idleTimeout) break;
      this.#stopProc(p);
    }
    this.#armIdleTimer();
  }

  /** Ask a ready process to quit: SIGTERM, SIGKILL after the grace period. */
  #stopProc(p: Proc): void {
    if (p.state !== 'ready') return;
    p.state = 'stopping';
    this.#unready(p);
    if (p.idle !== IDLE_NONE) this.#removeIdle(p);
    this.processes--;
    p.conn?.close();
    this.#kill(p);
    if (!this.retired) this.#fill();
  }

  #kill(p: Proc): void {
    this.#env.host.kill(p.pid, 'SIGTERM');
    this.#killLater(p);
  }

  /**
   * SIGKILL `p` after the grace period — unless requests were under way on
   * client connections handed to it during that period (still running, or
   * just finished and the process on its way out) and the daemon is not
   * shutting down:
   * the router cannot see those, the process reports them, and a process
   * replaced (restart, reconfiguration) finishes its requests as under Unit,
   * then exits by itself. It is looked at again a grace period later.
   */
  #killLater(p: Proc): void {
    const env = this.#env;
    p.killTimer = setTimeout(() => {
      p.killTimer = null;
      if (p.state !== 'stopping') return;
      if (!this.stopped && p.conn instanceof HttpConnection && p.conn.directBusyWithin(env.killTimeout)) this.#killLater(p);
      else env.host.kill(p.pid, 'SIGKILL');
    }, env.killTimeout);
    p.killTimer.unref();
  }

  /** The connection to `p` broke: the process is gone or useless. */
  #lost(p: Proc): void {
    if (p.state === 'ready') this.#stopProc(p);
  }

  /** Main reported the exit of `p` (§1.5); `signal`: the signal that ended it, if one did. */
  exited(p: Proc, signal: string | null = null): void {
    if (p.killTimer) { clearTimeout(p.killTimer); p.killTimer = null; }
    const was = p.state;
    if (was === 'exited') return;
    p.state = 'exited';
    this.#env.untrack(p.pid);
    if (was !== 'starting') this.procs.delete(p);
    if (was === 'ready') {
      this.#unready(p);
      this.processes--;
    } else if (was === 'starting') {
      // Exited between spawn and connection: the connect attempt fails and does the accounting.
      return;
    }
    // In-flight requests fail now: 503, or a closed connection after the head.
    p.conn?.close();
    // Connections handed to it and never taken come back to the router.
    if (p.conn instanceof HttpConnection) p.conn.exited(signal);
    if (was === 'ready' && p.served === 0 && performance.now() - p.readyAt < EARLY_EXIT) this.#earlyExits++;
    else this.#earlyExits = 0;
    if (!this.retired) {
      if (this.#earlyExits >= EARLY_EXITS_BEFORE_BACKOFF) this.#fillLater();
      else this.#fill();
    }
    this.#checkGone();
  }

  /**
   * Processes keep dying right after they started (a program that is "ready" on
   * exec and then fails): replace them with a growing delay instead of at once,
   * so a broken application does not spin. Requests still start processes at once.
   */
  #fillLater(): void {
    if (this.#backoff) return;
    const delay = Math.min(MAX_BACKOFF, 500 * 2 ** (this.#earlyExits - EARLY_EXITS_BEFORE_BACKOFF));
    this.#env.log.warn(`"${this.name}" application processes exit right after they start; next start in ${delay} ms`);
    this.#backoff = setTimeout(() => {
      this.#backoff = null;
      if (!this.retired) this.#fill();
    }, delay);
    this.#backoff.unref();
  }

  /**
   * Drain: new processes only for requests already queued here; each process
   * stops once idle. `successor` takes over the queued requests (restart, §2.6).
   */
  retire(successor?: Pool): void {
    if (this.retired) return;
    this.retired = true;
    this.#returnHandoffs();
    if (this.#backoff) { clearTimeout(this.#backoff); this.#backoff = null; }
    if (this.#idleTimer) { clearTimeout(this.#idleTimer); this.#idleTimer = null; }
    if (successor && this.#queued() > 0) {
      const moved = this.#queue.slice(this.#qHead) as Job[];
      this.#queue = [];
      this.#qHead = 0;
      this.active -= moved.length;
      for (const job of moved) {
        job.pool = successor;
        successor.active++;
        successor.#queue.push(job);
      }
      successor.#dispatch();
      successor.#fill();
    }
    if (this.#queued() === 0) {
      for (const p of [...this.#spareIdle, ...this.#overflowIdle]) this.#stopProc(p);
    }
    this.#checkGone();
  }

  /**
   * Shut down: queued requests get 503, nothing starts any more. Graceful: busy
   * processes finish their requests first; otherwise every process is told to
   * stop now (their in-flight requests fail).
   */
  shutdown(graceful: boolean): void {
    this.stopped = true;
    this.retired = true;
    this.#returnHandoffs();
    if (this.#backoff) { clearTimeout(this.#backoff); this.#backoff = null; }
    if (this.#idleTimer) { clearTimeout(this.#idleTimer); this.#idleTimer = null; }
    this.#failQueued(503);
    for (const p of [...this.#ready]) {
      if (!graceful || p.inflight === 0) this.#stopProc(p);
      else this.#unready(p);
    }
    if (!graceful) {
      for (const p of this.procs) if (p.state === 'ready') this.#stopProc(p);
    }
    this.#checkGone();
  }

  #checkGone(): void {
    if (this.#gone || !this.retired || this.procs.size > 0 || this.active > 0 || this.#queued() > 0) return;
    this.#gone = true;
    this.#env.gone(this);
  }

  /**
   * A client connection offered whole (transport/handoff.ts): to the ready
   * process holding the fewest, or held until a starting one is ready.
   * @returns false when no process can take it: the router serves it.
   */
  handoff(h: AppHandoff): boolean {
    if (!this.launch.handoff || this.retired || HeldConnection.refused(h.socket)) return false;
    let best: HttpConnection | undefined;
    for (const p of this.#ready) {
      const c = p.conn as HttpConnection;
      if (p.accepting && c.canHandoff && (best === undefined || c.direct < best.direct)) best = c;
    }
    if (best !== undefined) return best.handoff(h);
    if (this.pending === 0) return false;
    const held = HeldConnection.hold(h);
    if (held === null) return false;
    this.#held.push(held);
    return true;
  }

  /** Connections held for processes being started. */
  #held: HeldConnection[] = [];

  /** A process became ready: give it its share of the held connections. */
  #flushHandoffs(): void {
    if (this.#held.length === 0) return;
    const share = Math.ceil(this.#held.length / (this.pending + 1));
    for (const held of this.#held.splice(0, share)) {
      const h = held.release();
      if (!this.handoff(h)) h.reinject(markRefused(h.socket));
    }
  }

  /** No process will take the held connections: the router serves them. */
  #returnHandoffs(): void {
    for (const held of this.#held.splice(0)) held.refuse();
  }

  /** Whether the pool has nothing left (all processes exited, no request). */
  get isGone(): boolean {
    return this.#gone;
  }
}
