/**
 * Unit's variables (spec/router.md §6.2) and compiled templates (§6.1, §6.3).
 *
 * A template is parsed once (by the shared parser in src/config/template.ts)
 * and compiled into literal parts and variable getters; expanding it walks that
 * array. Values are byte strings (see uri.ts). A getter returns undefined for
 * an absent value: templates print it as '' (or '-' in the access log).
 */
import { parseTemplate } from '../config/template.ts';
import type { Request } from './request.ts';
import { decodeComponent, toByteString } from './uri.ts';
import { JsRuntime } from './js.ts';

/** Reads one variable of a request; undefined = not set. */
export type VarGetter = (r: Request) => string | undefined;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const p2 = (n: number): string => (n < 10 ? '0' : '') + n;

let localSecond = -1;
let localText = '';

/** Local time as `DD/Mon/YYYY:HH:MM:SS ±hhmm` (`$time_local`), cached per second. */
export function timeLocal(now = Date.now()): string {
  const s = Math.floor(now / 1000);
  if (s !== localSecond) {
    const d = new Date(s * 1000);
    const off = -d.getTimezoneOffset();
    const a = Math.abs(off);
    localSecond = s;
    localText = `${p2(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:` +
      `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ` +
      `${off < 0 ? '-' : '+'}${p2(Math.floor(a / 60))}${p2(a % 60)}`;
  }
  return localText;
}

/** Find the first response field whose name, lowercased with `-` → `_`, equals `key`. */
function responseField(r: Request, key: string): string | undefined {
  const f = r.res.outFields;
  if (f === null) {
    const names = r.res.getHeaderNames();
    for (const n of names) {
      if (n.replace(/-/g, '_') === key) {
        const v = r.res.getHeader(n);
        return Array.isArray(v) ? v[0] : v === undefined ? undefined : String(v);
      }
    }
    return undefined;
  }
  for (let i = 0; i < f.length; i += 2) {
    const n = f[i];
    if (n.length === key.length && n.toLowerCase().replace(/-/g, '_') === key) return f[i + 1];
  }
  return undefined;
}

const FIXED: Record<string, VarGetter> = {
  uri: (r) => r.path,
  request_uri: (r) => r.target,
  method: (r) => r.method,
  host: (r) => (r.hostPresent ? r.host : undefined),
  remote_addr: (r) => r.remoteAddr,
  request_line: (r) => r.requestLine,
  status: (r) => String(r.res.status).padStart(3, '0'),
  body_bytes_sent: (r) => String(r.bytesSent),
  request_time: (r) => ((performance.now() - r.start) / 1000).toFixed(3),
  time_local: () => timeLocal(),
  request_id: (r) => r.requestId,
  dollar: () => '$',
  header_referer: (r) => r.lastHeader('referer'),
  header_user_agent: (r) => r.lastHeader('user-agent'),
  response_header_connection: (r) => r.res.outFields === null ? undefined
    : !r.res.shouldKeepAlive ? (r.http11 ? 'close' : undefined)
    : r.http11 ? undefined : 'keep-alive',
  response_header_content_length: (r) => {
    const v = responseField(r, 'content_length');
    if (v !== undefined) return v;
    const n = r.res.outFields === null ? null : r.res.knownLength();
    return n === null ? undefined : String(n);
  },
  response_header_transfer_encoding: (r) => (r.res.chunkedEncoding ? 'chunked' : undefined),
};

/**
 * The getter for variable `name` as written (`uri`, `header_user_agent`,
 * `arg_foo`, …), or null when Unit has no such variable.
 */
export function variableGetter(name: string): VarGetter | null {
  if (Object.hasOwn(FIXED, name)) return FIXED[name];
  if (name.startsWith('header_') && name.length > 7) {
    const field = name.slice(7).toLowerCase().replace(/_/g, '-');
    return (r) => r.header(field);
  }
  if (name.startsWith('arg_') && name.length > 4) {
    const arg = decodeComponent(toByteString(name.slice(4)), true);
    return (r) => {
      const a = r.args();
      for (let i = a.length - 2; i >= 0; i -= 2) if (a[i] === arg) return a[i + 1];
      return undefined;
    };
  }
  if (name.startsWith('cookie_') && name.length > 7) {
    const cookie = name.slice(7);
    return (r) => {
      const c = r.cookies();
      for (let i = 0; i < c.length; i += 2) if (c[i] === cookie) return c[i + 1];
      return undefined;
    };
  }
  if (name.startsWith('response_header_') && name.length > 16) {
    const key = name.slice(16).toLowerCase();
    return (r) => responseField(r, key);
  }
  return null;
}

/** Error raised for a template naming an unknown variable. */
export class UnknownVariableError extends Error {}

/** A JS template literal compiled into a configuration's JsRuntime. */
interface JsTemplate { runtime: JsRuntime; index: number }

/** Where JS templates being compiled go (set by compileWithJs); null: a shared runtime without modules. */
let jsTarget: (() => JsRuntime) | null = null;
let sharedRuntime: JsRuntime | null = null;

/**
 * Run `fn` (which compiles templates) with JS template literals compiled into
 * the runtime `runtime()` returns; it is asked for only when a JS template is met.
 */
export function compileWithJs<T>(runtime: () => JsRuntime, fn: () => T): T {
  const prev = jsTarget;
  jsTarget = runtime;
  try {
    return fn();
  } finally {
    jsTarget = prev;
  }
}

/** A JsRuntime for `modules` whose `vars` are Unit's variables. @throws Error as JsRuntime does. */
export function createJsRuntime(modules: Readonly<Record<string, string>>, use: readonly string[]): JsRuntime {
  return new JsRuntime(modules, use, variableGetter);
}

/** A compiled template; `expand` never throws except for JS template errors. */
export class Template {
  /** The source as configured. */
  readonly source: string;
  /** Set when the template has no variables: its (byte string) value. */
  readonly constant: string | null;
  private readonly parts: Array<string | VarGetter>;
  private readonly js: JsTemplate | null;

  constructor(source: string, parts: Array<string | VarGetter>, js: JsTemplate | null) {
    this.source = source;
    this.parts = parts;
    this.js = js;
    this.constant = js === null && parts.every((p) => typeof p === 'string') ? (parts as string[]).join('') : null;
  }

  /** Expanded value; absent variables give ''. @throws Error from a JS template. */
  expand(r: Request): string {
    if (this.constant !== null) return this.constant;
    if (this.js !== null) return this.runJs(r);
    let s = '';
    const parts = this.parts;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      s += typeof p === 'string' ? p : (p(r) ?? '');
    }
    return s;
  }

  /** As expand(), but an absent variable prints `-` (access log, §6.1). */
  expandLog(r: Request, escape?: (v: string) => string): string {
    if (this.constant !== null) return this.constant;
    if (this.js !== null) return this.runJs(r);
    let s = '';
    const parts = this.parts;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (typeof p === 'string') { s += p; continue; }
      const v = p(r);
      s += v === undefined ? '-' : escape ? escape(v) : v;
    }
    return s;
  }

  private runJs(r: Request): string {
    const js = this.js!;
    return toByteString(js.runtime.call(js.index, r));
  }
}

/**
 * Compile a template string (§6.1). Strings without `$` or a leading backtick
 * are constants; JS template literals (§6.3) go to the runtime of compileWithJs().
 * @param option option name for error messages (`"location"`, `"pass"`, …)
 * @throws Error `Unknown variable "X" in the "OPTION" value.` or the parser's error.
 */
export function compileTemplate(source: string, option = 'value'): Template {
  const parsed = parseTemplate(source);
  if (parsed.js) {
    const runtime = jsTarget !== null ? jsTarget() : (sharedRuntime ??= createJsRuntime({}, []));
    return new Template(source, [], { runtime, index: runtime.compile(parsed.source, option) });
  }
  const parts: Array<string | VarGetter> = [];
  for (const p of parsed.parts) {
    if (typeof p === 'string') {
      const b = toByteString(p);
      if (typeof parts[parts.length - 1] === 'string') parts[parts.length - 1] += b;
      else parts.push(b);
      continue;
    }
    const g = variableGetter(p.name);
    if (g === null) throw new UnknownVariableError(`Unknown variable "${p.name}" in the "${option}" value.`);
    parts.push(g);
  }
  return new Template(source, parts, null);
}

/** A `match.if` / access-log `if` condition: template with optional leading `!` (§3.6). */
export class Condition {
  readonly negate: boolean;
  readonly template: Template;
  constructor(negate: boolean, template: Template) { this.negate = negate; this.template = template; }

  /** True when the expansion is truthy (not '', `0`, `false`, `null`, `undefined`), inverted by `!`. */
  test(r: Request): boolean {
    const v = this.template.expand(r);
    const truthy = !(v === '' || v === '0' || v === 'false' || v === 'null' || v === 'undefined');
    return truthy !== this.negate;
  }
}

/** Compile an `if` value. */
export function compileCondition(source: string, option = 'if'): Condition {
  const negate = source.startsWith('!');
  return new Condition(negate, compileTemplate(negate ? source.slice(1) : source, option));
}
