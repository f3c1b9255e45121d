/**
 * The thread that runs JavaScript templates and modules for the router
 * (see js.ts for the protocol and why a thread).
 *
 * Each configuration that uses JavaScript gets one `node:vm` context here,
 * made with nothing but ECMAScript built-ins plus `atob`/`btoa`: the thread's
 * own `require`, `process` and `Function` are out of reach, and no object of
 * this realm is handed in (requests arrive as strings and are rebuilt inside
 * the context; `vars` asks the router through a closure the context cannot
 * reach). The router waits for every answer with a deadline and replaces this
 * thread when one is missed, so nothing here needs a time limit of its own.
 */
import vm from 'node:vm';
import { workerData, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';

/** Values of the shared state word (index 0 of `ctl`); js.ts has the same table. */
const IDLE = 0, REQUEST = 1, BUSY = 2, VAR = 3, VAR_REPLY = 4, DONE = 5;

const { port, sab } = workerData as { port: MessagePort; sab: SharedArrayBuffer };
const ctl = new Int32Array(sab);

function setState(s: number): void {
  Atomics.store(ctl, 0, s);
  Atomics.notify(ctl, 0);
}

function receive(): unknown[] {
  const m = receiveMessageOnPort(port);
  if (m === undefined) throw new Error('message missing');
  return m.message as unknown[];
}

/** `vars.NAME`: a round trip to the router, which holds the request. */
function lookup(name: string): unknown {
  port.postMessage(['var', name]);
  setState(VAR);
  while (Atomics.load(ctl, 0) === VAR) Atomics.wait(ctl, 0, VAR);
  const [value] = receive();
  setState(BUSY);
  return value;
}

/**
 * Run first in every context. What the thread calls is kept in closures and
 * non-writable globals that templates and modules can neither replace nor reach.
 */
const BOOTSTRAP = `(function (lookup) {
  'use strict';
  const defineProperty = Object.defineProperty;
  const hasOwn = Object.prototype.hasOwnProperty;
  const isArray = Array.isArray;
  const toStr = String;
  const Err = Error;
  const templates = [];
  const modules = new Map();
  let pending = null;

  function own(o, k, v) {
    defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  }
  function describe(e) {
    try { return toStr(e); } catch { return 'exception'; }
  }
  const vars = new Proxy({}, {
    get(_t, name) {
      if (typeof name !== 'string') return undefined;
      let v;
      try { v = lookup(name); } catch { throw new Err('variable lookup failed'); }
      return typeof v === 'string' ? v : undefined;
    },
  });

  function run() {
    const a = pending;
    pending = null;
    try {
      // a: template index, uri, host, remoteAddr, then counts and [name, value] pairs of args, headers, cookies.
      let p = 7;
      const args = {}, headers = {}, cookies = {};
      for (let i = 0; i < a[4]; i++, p += 2) {
        const k = a[p], prev = hasOwn.call(args, k) ? args[k] : undefined;
        own(args, k, prev === undefined ? a[p + 1] : isArray(prev) ? prev.concat([a[p + 1]]) : [prev, a[p + 1]]);
      }
      for (let i = 0; i < a[5]; i++, p += 2) if (!hasOwn.call(headers, a[p])) own(headers, a[p], a[p + 1]);
      for (let i = 0; i < a[6]; i++, p += 2) if (!hasOwn.call(cookies, a[p])) own(cookies, a[p], a[p + 1]);
      const template = templates[a[0]];
      return '\\u0000' + toStr(template(a[1], a[2], a[3], args, headers, cookies, vars));
    } catch (e) {
      return '\\u0001' + describe(e);
    }
  }

  function load(name, from) {
    const m = modules.get(name);
    if (m === undefined) throw new Err('JS module "' + name + '" is not found' + from);
    if (m.state === 2) return m.value;
    if (m.state === 1) throw new Err('circular import of JS module "' + name + '"' + from);
    m.state = 1;
    m.value = m.fn((dep) => load(toStr(dep), ' (imported by "' + name + '")'));
    m.state = 2;
    return m.value;
  }

  defineProperty(globalThis, '__junction_run__', { value: run });
  defineProperty(globalThis, '__junction_add__', { value: (fn) => templates.push(fn) - 1 });
  defineProperty(globalThis, '__junction_module__', {
    value: (name, fn) => { modules.set(name, { fn, state: 0, value: undefined }); },
  });
  defineProperty(globalThis, '__junction_global__', {
    value: (name) => {
      try {
        defineProperty(globalThis, name, { value: load(name, ''), writable: true, enumerable: false, configurable: true });
        return '';
      } catch (e) {
        return describe(e);
      }
    },
  });

  // atob/btoa as njs has them, written here so that they belong to this realm.
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  defineProperty(globalThis, 'btoa', { writable: true, configurable: true, value: function btoa(s) {
    s = toStr(s);
    let out = '';
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) throw new Err('Invalid character');
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64[n >> 18] + B64[(n >> 12) & 63] +
        (i + 1 < s.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < s.length ? B64[n & 63] : '=');
    }
    return out;
  } });
  defineProperty(globalThis, 'atob', { writable: true, configurable: true, value: function atob(s) {
    s = toStr(s).replace(/[\\t\\n\\f\\r ]/g, '');
    if (s.length % 4 === 0) s = s.replace(/==?$/, '');
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new Err('Invalid character');
    let out = '', bits = 0, acc = 0;
    for (let i = 0; i < s.length; i++) {
      acc = ((acc << 6) | B64.indexOf(s[i])) & 0xffffff;
      bits += 6;
      if (bits >= 8) { bits -= 8; out += toStr.fromCharCode((acc >> bits) & 255); }
    }
    return out;
  } });
  return { set() { pending = arguments; } };
})`;

const RUN = new vm.Script('__junction_run__()', { filename: 'template' });

interface Context { ctx: vm.Context; set: (...a: unknown[]) => void }
const contexts = new Map<number, Context>();

function evaluate(ctx: vm.Context, code: string, filename: string): unknown {
  return new vm.Script(code, { filename }).runInContext(ctx);
}

/** The text of a compiler or runtime error, with the module line when known. */
function describe(e: unknown, name?: string): string {
  const err = e as Error;
  const first = name !== undefined ? /^(.*):(\d+)\n/.exec(String(err?.stack ?? '')) : null;
  const where = first !== null && first[1] === name ? ` in ${name}:${first[2]}` : '';
  return `${err?.name ?? 'Error'}: ${err?.message ?? String(e)}${where}`;
}

/** Create context `id` with `modules` ([name, wrapped code]) registered and `use` bound as globals. */
function setup(id: number, modules: Array<[string, string]>, use: string[]): unknown[] {
  const ctx = vm.createContext(vm.constants.DONT_CONTEXTIFY, {
    name: `junction js ${id}`, codeGeneration: { strings: true, wasm: false }, microtaskMode: 'afterEvaluate',
  });
  const api = (evaluate(ctx, BOOTSTRAP, 'bootstrap') as (l: (n: string) => unknown) => { set(...a: unknown[]): void })(lookup);
  for (const [name, code] of modules) {
    try {
      evaluate(ctx, `__junction_module__(${JSON.stringify(name)}, ${code})`, name);
    } catch (e) {
      return ['error', `JS module "${name}": ${describe(e, name)}`];
    }
  }
  for (const name of use) {
    const err = evaluate(ctx, `__junction_global__(${JSON.stringify(name)})`, 'module');
    if (err !== '') return ['error', `JS module "${name}" failed: ${typeof err === 'string' ? err : 'exception'}`];
  }
  contexts.set(id, { ctx, set: api.set });
  return ['ok'];
}

function handle(m: unknown[]): unknown[] {
  switch (m[0]) {
    case 'setup':
      return setup(m[1] as number, m[2] as Array<[string, string]>, m[3] as string[]);
    case 'compile': {
      const c = contexts.get(m[1] as number);
      if (c === undefined) return ['error', 'no such context'];
      try {
        const index = evaluate(c.ctx, `__junction_add__(${m[2] as string})`, m[3] as string);
        return typeof index === 'number' ? ['ok', index] : ['error', 'not a template'];
      } catch (e) {
        return ['error', describe(e)];
      }
    }
    case 'call': {
      const c = contexts.get(m[1] as number);
      if (c === undefined) return ['error', 'no such context'];
      Reflect.apply(c.set, undefined, m.slice(2));
      const out = RUN.runInContext(c.ctx);
      if (typeof out !== 'string' || out.length === 0) return ['throw', 'exception'];
      return out.charCodeAt(0) === 0 ? ['ok', out.slice(1)] : ['throw', out.slice(1)];
    }
    case 'drop':
      for (const id of m[1] as number[]) contexts.delete(id);
      return ['ok'];
    default:
      return ['error', `unknown operation ${String(m[0])}`];
  }
}

for (;;) {
  Atomics.wait(ctl, 0, IDLE);
  if (Atomics.load(ctl, 0) !== REQUEST) continue;
  setState(BUSY);
  let reply: unknown[];
  try {
    reply = handle(receive());
  } catch (e) {
    reply = ['error', describe(e)];
  }
  port.postMessage(reply);
  setState(DONE);
}
