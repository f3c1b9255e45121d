/**
 * JavaScript template literals and modules (spec/router.md §6.3).
 *
 * Each applied configuration that uses JavaScript gets one JsRuntime: a
 * `node:vm` context with only ECMAScript built-ins, `atob`/`btoa`, the
 * configuration's modules (each a global NAME bound to its default export)
 * and its compiled templates. The contexts live in one worker thread
 * (js-worker.ts), not in the router's thread:
 *
 *   - nothing of the router is reachable from a template (another isolate;
 *     inside it, a context without `require`, `process` or host objects);
 *   - the router waits for each answer with a deadline (JS_TIMEOUT); a
 *     template that loops — in its body, a module function or a promise job —
 *     costs one 500, then the thread is replaced and the contexts rebuilt.
 *     (A time limit on `vm` inside the router's own thread would cost a
 *     watchdog thread per call and cannot stop promise jobs safely.)
 *
 * The call is synchronous, as template expansion is: the router posts the
 * request's strings on a MessagePort, flips a shared state word and waits on
 * it with `Atomics.wait`; the worker answers the same way, and asks back for
 * `vars.NAME` values mid-call. A round trip costs a few microseconds.
 *
 * Templates are compiled when a configuration is applied. Exceptions and
 * time-outs surface as JsError (→ 500; the request is then not logged).
 */
import { Worker, MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { wrapJsModule, JsModuleError } from '../config/js-module.ts';
import { JS_TEMPLATE_PARAMS } from '../config/template.ts';
import type { Request } from './request.ts';

/** Longest a template may run per call, in milliseconds. */
export const JS_TIMEOUT = 100;
/** Longest the worker may take to start, in milliseconds. */
const BOOT_TIMEOUT = 5000;
/** Longest a configuration's modules may take to evaluate (and its templates to compile), in milliseconds. */
const SETUP_TIMEOUT = 1000;
/** Heap limit of the worker, MiB: a template that allocates without end takes only the worker down. */
const WORKER_HEAP_MB = 128;
/** Variable names whose getters are cached per runtime (`vars[name]` may be anything). */
const VAR_CACHE_MAX = 256;

/** States of the shared word; js-worker.ts has the same table. */
const IDLE = 0, REQUEST = 1, VAR = 3, VAR_REPLY = 4, DONE = 5;

/** A template threw, timed out or returned something unusable. */
export class JsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsError';
  }
}

/** The router's getter for a Unit variable name, or null when there is none. */
export type VariableLookup = (name: string) => ((r: Request) => string | undefined) | null;

/** The worker thread and its channel; replaced after a missed deadline. */
class JsHost {
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private ctl: Int32Array | null = null;
  private started = false;
  /** Bumped whenever the worker is replaced: runtimes set up under an older one redo it. */
  generation = 0;

  private start(): void {
    const sab = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const w = new Worker(new URL('./js-worker.ts', import.meta.url), {
      workerData: { port: port2, sab },
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: false,
      stderr: false,
    });
    w.on('error', () => { /* reported by 'exit' */ });
    // A worker that died (heap limit, …) is replaced at the next call instead of costing it a time-out.
    w.on('exit', () => { if (this.worker === w) this.kill(); });
    w.unref();
    port1.unref();
    this.worker = w;
    this.port = port1;
    this.ctl = new Int32Array(sab);
    this.started = false;
  }

  /** Stop the worker (it missed a deadline or died); all contexts are gone. */
  private kill(): void {
    void this.worker?.terminate();
    this.port?.close();
    this.worker = null;
    this.port = null;
    this.ctl = null;
    this.generation++;
  }

  /**
   * One synchronous exchange with the worker.
   * @param onVar answers `vars.NAME` asked during the exchange
   * @returns the worker's reply (['ok', …], ['throw', message] or ['error', message])
   * @throws JsError when the deadline passes (the worker is replaced)
   */
  exchange(message: unknown[], timeout: number, onVar?: (name: unknown) => string | undefined): unknown[] {
    if (this.worker === null) this.start();
    try {
      return this.run(message, timeout, onVar);
    } catch (e) {
      // The two sides may now disagree about the state word: start afresh.
      if (this.worker !== null) this.kill();
      throw e instanceof JsError ? e : new JsError((e as Error).message);
    }
  }

  private run(message: unknown[], timeout: number, onVar?: (name: unknown) => string | undefined): unknown[] {
    const ctl = this.ctl!;
    const port = this.port!;
    port.postMessage(message);
    Atomics.store(ctl, 0, REQUEST);
    Atomics.notify(ctl, 0);
    // The first exchange also waits for the thread to boot.
    const deadline = performance.now() + (this.started ? timeout : Math.max(timeout, BOOT_TIMEOUT));
    for (;;) {
      const s = Atomics.load(ctl, 0);
      if (s === DONE) {
        const m = receiveMessageOnPort(port);
        Atomics.store(ctl, 0, IDLE);
        this.started = true;
        return (m?.message as unknown[] | undefined) ?? ['error', 'no answer'];
      }
      if (s === VAR) {
        const m = receiveMessageOnPort(port);
        const name = (m?.message as unknown[] | undefined)?.[1];
        const value = onVar === undefined ? undefined : onVar(name);
        port.postMessage([typeof value === 'string' ? value : undefined]);
        Atomics.store(ctl, 0, VAR_REPLY);
        Atomics.notify(ctl, 0);
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.kill();
        throw new JsError(`JavaScript ran longer than ${timeout} ms`);
      }
      Atomics.wait(ctl, 0, s, left);
    }
  }

  /** Forget contexts whose configurations are gone (best effort). */
  drop(ids: number[]): void {
    if (this.worker === null || !this.started) return;
    try { this.exchange(['drop', ids], JS_TIMEOUT); } catch { /* replaced */ }
  }
}

const host = new JsHost();
let nextId = 1;
const dropped: number[] = [];
const registry = new FinalizationRegistry<number>((id) => {
  dropped.push(id);
  // Batch: one exchange for every context collected in the same turn.
  if (dropped.length === 1) setImmediate(() => host.drop(dropped.splice(0)));
});

/** A byte string (one char per byte) as the text JavaScript sees (UTF-8 decoded). */
function toJs(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, 'latin1').toString('utf8');
  }
  return s;
}

/** The JavaScript environment of one applied configuration. */
export class JsRuntime {
  private readonly id = nextId++;
  private readonly modules: Array<[string, string]> = [];
  private readonly use: readonly string[];
  private readonly templates: Array<[string, string]> = [];
  private readonly lookupVar: VariableLookup;
  private readonly getters = new Map<string, ((r: Request) => string | undefined) | null>();
  private readonly onVar = (name: unknown): string | undefined => this.variable(name);
  private generation = -1;
  private current: Request | null = null;

  /**
   * Create the context and evaluate the modules named in `use` (and what they import).
   * @param modules every uploaded module, name → source
   * @param use `settings.js_module` names
   * @throws Error when a module is missing, does not compile, throws or runs too long
   *   (the configuration cannot be applied).
   */
  constructor(modules: Readonly<Record<string, string>>, use: readonly string[], lookup: VariableLookup) {
    this.use = use;
    this.lookupVar = lookup;
    const seen = new Set<string>();
    const todo = [...use];
    while (todo.length) {
      const name = todo.shift()!;
      if (seen.has(name)) continue;
      seen.add(name);
      if (!Object.hasOwn(modules, name)) throw new Error(`JS module "${name}" is not found.`);
      try {
        const w = wrapJsModule(name, modules[name]);
        this.modules.push([name, w.code]);
        todo.push(...w.imports);
      } catch (e) {
        throw new Error(`JS module "${name}": ${(e as JsModuleError).message}`);
      }
    }
    this.setUp();
    registry.register(this, this.id);
  }

  /** (Re)create the context in the current worker, with the templates compiled so far. */
  private setUp(): void {
    let r: unknown[];
    try {
      r = host.exchange(['setup', this.id, this.modules, this.use], SETUP_TIMEOUT);
    } catch (e) {
      const names = this.modules.map(([n]) => `"${n}"`).join(', ');
      throw new JsError(names ? `JS modules ${names}: ${(e as Error).message}` : (e as Error).message);
    }
    if (r[0] !== 'ok') throw new Error(String(r[1]));
    for (const [code, option] of this.templates) {
      const c = host.exchange(['compile', this.id, code, option], SETUP_TIMEOUT);
      if (c[0] !== 'ok') throw new Error(String(c[1]));
    }
    this.generation = host.generation;
  }

  /**
   * Compile a template literal (the whole configured string, backticks included).
   * @returns its index for call()
   * @throws Error when it does not compile.
   */
  compile(source: string, option: string): number {
    if (this.generation !== host.generation) this.setUp();
    const code = `(function (${JS_TEMPLATE_PARAMS.join(', ')}) { "use strict"; return (${source}\n); })`;
    const r = host.exchange(['compile', this.id, code, option], SETUP_TIMEOUT);
    if (r[0] !== 'ok' || typeof r[1] !== 'number') {
      throw new Error(`Invalid JS template in the "${option}" value: ${String(r[1])}`);
    }
    this.templates.push([code, option]);
    return r[1];
  }

  /**
   * Run template `index` for `r` (router.md §6.3 parameters).
   * @returns the result as JavaScript text
   * @throws JsError on an exception or when it runs longer than JS_TIMEOUT.
   */
  call(index: number, r: Request): string {
    const a = r.args();
    const h = r.rawHeaders;
    const c = r.cookies();
    const m: unknown[] = ['call', this.id, index, toJs(r.path), toJs(r.host), r.remoteAddr,
      a.length / 2, h.length / 2, c.length / 2];
    for (let i = 0; i < a.length; i++) m.push(toJs(a[i]));
    for (let i = 0; i < h.length; i++) m.push(toJs(h[i]));
    for (let i = 0; i < c.length; i++) m.push(toJs(c[i]));
    const prev = this.current;
    this.current = r;
    try {
      if (this.generation !== host.generation) {
        try {
          this.setUp();
        } catch (e) {
          throw e instanceof JsError ? e : new JsError((e as Error).message);
        }
      }
      const reply = host.exchange(m, JS_TIMEOUT, this.onVar);
      if (reply[0] === 'ok' && typeof reply[1] === 'string') return reply[1];
      throw new JsError(String(reply[1]));
    } catch (e) {
      r.jsFailed = true;
      throw e;
    } finally {
      this.current = prev;
    }
  }

  /** `vars.NAME` for the request being evaluated. */
  private variable(name: unknown): string | undefined {
    try {
      const r = this.current;
      if (r === null || typeof name !== 'string') return undefined;
      let g = this.getters.get(name);
      if (g === undefined) {
        g = this.lookupVar(name);
        if (this.getters.size < VAR_CACHE_MAX) this.getters.set(name, g);
      }
      const v = g === null ? undefined : g(r);
      return v === undefined ? undefined : toJs(v);
    } catch {
      return undefined;
    }
  }
}
