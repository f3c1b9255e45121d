/**
 * Validation of a whole candidate configuration (spec/control-api.md §6):
 * one schema table per configuration object — member name → allowed JSON
 * types → extra check — walked the way Unit walks its own tables, so the
 * first violation found is the one Unit reports, with Unit's sentence.
 *
 * Adding an option is adding a row to the table of its object.
 */
import zlib from 'node:zlib';
import { compileAddressPatterns, AddressPatternError, parseListenerName } from './address.ts';
import { findAppModule, parseAppType, type AppLanguage, type AppModule } from './app-type.ts';
import { M, TYPE_WORDS } from './messages.ts';
import { compilePcre, RegexError } from './regex.ts';
import { isTemplate, parseTemplate, templateError, TemplateError } from './template.ts';

/** What the validator needs besides the tree. */
export interface ValidationContext {
  /** Available language modules (`external` is implied). */
  modules: readonly AppModule[];
  /** Names of the uploaded certificate bundles. */
  certificates: ReadonlySet<string>;
  /** Names of the uploaded JS modules (`settings.js_module`); absent = none uploaded. */
  jsModules?: ReadonlySet<string>;
}

// ---------------------------------------------------------------------------
// Types, in Unit's order (the order of the words in type messages).

const NULL = 1, BOOLEAN = 2, INTEGER = 4, FRACTION = 8, STRING = 16, ARRAY = 32, OBJECT = 64;
/** A "number" slot takes integers and fractions. */
const NUMBER = INTEGER | FRACTION;
const ANY = NULL | BOOLEAN | NUMBER | STRING | ARRAY | OBJECT;

const INT32_MAX = 2147483647;
/** sysconf(_SC_THREAD_STACK_MIN) and the page size of Linux on the usual platforms. */
const THREAD_STACK_MIN = 16384;
const PAGE_SIZE = 4096;
/** PATH_MAX minus "/sys/fs/cgroup" and a NUL: longer cgroup paths cannot be built. */
const CGROUP_PATH_MAX = 4096 - '/sys/fs/cgroup'.length - 1;

type Json = Record<string, unknown>;

function typeOf(value: unknown): number {
  if (value === null) return NULL;
  switch (typeof value) {
    case 'boolean': return BOOLEAN;
    case 'number': return Number.isInteger(value) ? INTEGER : FRACTION;
    case 'string': return STRING;
    case 'object': return Array.isArray(value) ? ARRAY : OBJECT;
    default: return NULL;
  }
}

/** `a string`, `either a string or an array`, `either a boolean, a string, or an array`. */
function expected(types: number): string {
  const words = TYPE_WORDS.filter((_, i) => types & (1 << i));
  if (words.length === 1) return words[0];
  if (words.length === 2) return `either ${words[0]} or ${words[1]}`;
  return `either ${words.slice(0, -1).join(', ')}, or ${words[words.length - 1]}`;
}

const word = (value: unknown): string => TYPE_WORDS[Math.log2(typeOf(value))];

// ---------------------------------------------------------------------------
// Walking machinery.

/** The first violation; thrown from anywhere in the walk and caught by validateConfig(). */
class Invalid {
  readonly detail: string;
  constructor(detail: string) {
    this.detail = detail;
  }
}

function fail(detail: string): never {
  throw new Invalid(detail);
}

interface Walk {
  root: Json;
  ctx: ValidationContext;
}

/** Extra check of a member whose type is already right. */
type Check = (value: any, w: Walk, name: string) => void;

/** One row of a schema: which JSON types the member takes, and what else it must satisfy. */
interface Rule {
  type: number;
  required?: boolean;
  /** ⓣ: a template string (control-api.md §6.0) is parsed instead of checked. */
  template?: boolean;
  check?: Check;
}

type Schema = Readonly<Record<string, Rule>>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (obj: unknown, key: string): boolean => isObject(obj) && Object.hasOwn(obj, key);

function checkType(name: string, value: unknown, types: number): void {
  if (!(typeOf(value) & types)) fail(M.type(name, expected(types), word(value)));
}

function checkTemplate(option: string, value: string): void {
  try {
    parseTemplate(value);
  } catch (err) {
    if (err instanceof TemplateError) fail(templateError(option, err));
    throw err;
  }
}

/**
 * Checks an object against its schema as Unit does: required members first
 * (in table order), then every member in the object's order — unknown name,
 * template, type, extra check.
 */
function validateObject(value: Json, schema: Schema, w: Walk): void {
  for (const [name, rule] of Object.entries(schema)) {
    if (rule.required && !Object.hasOwn(value, name)) fail(M.required(name));
  }
  for (const [name, member] of Object.entries(value)) {
    if (!Object.hasOwn(schema, name)) fail(M.unknown(name));
    const rule = schema[name];
    if (rule.template && typeof member === 'string' && isTemplate(member)) {
      checkTemplate(name, member);
      continue;
    }
    checkType(name, member, rule.type);
    rule.check?.(member, w, name);
  }
}

// Row builders.
const str: Rule = { type: STRING };
const int: Rule = { type: INTEGER };
const bool: Rule = { type: BOOLEAN };
const required = (rule: Rule): Rule => ({ ...rule, required: true });
const template = (rule: Rule): Rule => ({ ...rule, template: true });
/** An object member described by its own schema (a thunk, so tables can refer to later ones). */
const object = (schema: () => Schema): Rule => ({ type: OBJECT, check: (v, w) => validateObject(v, schema(), w) });
/** Every member of an object checked by `each(name, value)`. */
const eachMember = (each: (name: string, value: unknown, w: Walk) => void): Check =>
  (v: Json, w) => {
    for (const [name, member] of Object.entries(v)) each(name, member, w);
  };
/** Integer bounds with Unit's two messages. */
const range = (min: number, max: number, below: string, above: string) => (v: number): void => {
  if (v < min) fail(below);
  if (v > max) fail(above);
};

// ---------------------------------------------------------------------------
// Templates, patterns, addresses (§6.0, §6.4, §6.5).

const ifCheck: Check = (v: string) => {
  const expr = v.startsWith('!') ? v.slice(1) : v;
  if (isTemplate(expr)) checkTemplate('if', expr);
};

function validPercentEncoding(s: string): boolean {
  return !/%(?![0-9A-Fa-f]{2})/.test(s);
}

/** One `match` string pattern (§6.5): `!`, `~regex` that must compile, or a wildcard without `**`. */
function pattern(member: string, value: unknown, encoded: boolean): void {
  if (typeof value !== 'string') fail(encoded ? M.patternString(member) : M.patternStrings(member));
  if (value !== '') {
    const first = value.startsWith('!') ? 1 : 0;
    if (value[first] === '~') {
      try {
        compilePcre(value.slice(first + 1));
      } catch (err) {
        if (err instanceof RegexError) fail(err.message);
        throw err;
      }
    } else if (value.slice(first).includes('**')) {
      fail(M.patternDoubleStar);
    }
  }
  if (encoded && !validPercentEncoding(value)) fail(M.patternEncoded(member));
}

/** A pattern or an array of patterns. */
const patternList = (member: string, encoded = false): Check => (v: unknown) => {
  if (Array.isArray(v)) for (const p of v) pattern(member, p, encoded);
  else pattern(member, v, encoded);
};

const patterns = (member: string): Rule => ({ type: STRING | ARRAY, check: patternList(member) });
const encodedPatterns = (member: string): Rule => ({ type: STRING | ARRAY, check: patternList(member, true) });

/** `arguments`: object or array of objects; names percent-encoded; values encoded patterns. */
const argumentSets: Check = (v: unknown, w) => {
  const set = (s: unknown): void => {
    if (!isObject(s)) fail(M.patternArgumentsObject);
    for (const [name, value] of Object.entries(s)) {
      if (name === '') fail(M.patternEmptyName);
      if (!validPercentEncoding(name)) fail(M.patternEncoded('arguments'));
      patternList('arguments', true)(value, w, name);
    }
  };
  if (Array.isArray(v)) v.forEach(set);
  else set(v);
};

/** `headers`, `cookies`: object or array of objects; names non-empty; values patterns. */
const patternSets = (member: string): Check => (v: unknown, w) => {
  const set = (s: unknown): void => {
    if (!isObject(s)) fail(M.patternSetObjects(member));
    for (const [name, value] of Object.entries(s)) {
      if (name === '') fail(M.patternEmptyName);
      patternList(member)(value, w, name);
    }
  };
  if (Array.isArray(v)) v.forEach(set);
  else set(v);
};

const addresses: Rule = {
  type: STRING | ARRAY,
  check: (v: string | unknown[]) => {
    try {
      compileAddressPatterns(v);
    } catch (err) {
      if (err instanceof AddressPatternError) fail(err.message);
      throw err;
    }
  },
};

// ---------------------------------------------------------------------------
// pass (§6.2) and other cross references (§6.10).

/**
 * Splits a `pass` value into its 1–3 segments, each percent-decoded
 * (control-api.md §6.2). Returns null for more than 3 segments, an empty
 * segment or a malformed escape.
 */
export function passSegments(pass: string): string[] | null {
  const raw = pass.split('/');
  if (raw.length > 3) return null;
  const out: string[] = [];
  for (const segment of raw) {
    if (segment === '' || !validPercentEncoding(segment)) return null;
    const bytes: number[] = [];
    const b = Buffer.from(segment, 'utf8');
    for (let i = 0; i < b.length; i++) {
      if (b[i] === 0x25) {
        bytes.push(parseInt(String.fromCharCode(b[i + 1], b[i + 2]), 16));
        i += 2;
      } else {
        bytes.push(b[i]);
      }
    }
    out.push(Buffer.from(bytes).toString('utf8'));
  }
  return out;
}

/** Whether a constant `pass` names an existing target of `root` (§6.2 table). */
function passTargetExists(root: Json, segments: readonly string[]): boolean {
  const [first, second, third] = segments;
  switch (first) {
    case 'applications': {
      if (second === undefined || !has(root.applications, second)) return false;
      if (third === undefined) return true;
      const app = (root.applications as Json)[second];
      return has(app, 'targets') && has((app as Json).targets, third);
    }
    case 'upstreams':
      return second !== undefined && third === undefined && has(root.upstreams, second);
    case 'routes':
      if (third !== undefined || !Object.hasOwn(root, 'routes')) return false;
      return second === undefined ? Array.isArray(root.routes) : has(root.routes, second);
    default:
      return false;
  }
}

const passCheck: Check = (v: string, w) => {
  const segments = passSegments(v);
  if (!segments) fail(M.passInvalid(v));
  if (!passTargetExists(w.root, segments)) fail(M.passLocation(v));
};

// ---------------------------------------------------------------------------
// Listeners (§6.2–6.4).

const CLIENT_IP: Schema = {
  source: required(addresses),
  header: required(str),
  recursive: bool,
};

const FORWARDED: Schema = {
  client_ip: str,
  protocol: str,
  source: required(addresses),
  recursive: bool,
};

const SESSION: Schema = {
  cache_size: { type: INTEGER, check: (v: number) => { if (v < 0) fail(M.cacheSize); } },
  timeout: { type: INTEGER, check: (v: number) => { if (v <= 0) fail(M.sessionTimeout); } },
  tickets: { type: BOOLEAN | STRING | ARRAY, check: (v: unknown) => { if (typeof v !== 'boolean') ticketKeys(v); } },
};

/** Decoded size of a Base64 text as Unit computes it, or -1 when it is not Base64. */
function base64Length(s: string): number {
  let n = s.length;
  let pad = 0;
  while (n > 0 && pad < 2 && s[n - 1] === '=') {
    n--;
    pad++;
  }
  if (!/^[A-Za-z0-9+/]*$/.test(s.slice(0, n))) return -1;
  if (pad > 0 && s.length % 4 !== 0) return -1;
  if (n % 4 === 1) return -1;
  return Math.floor((n * 3) / 4);
}

function ticketKeys(v: unknown): void {
  for (const key of Array.isArray(v) ? v : [v]) {
    if (typeof key !== 'string') fail(M.ticketStrings);
    const n = base64Length(key);
    if (n < 0) fail(M.ticketBase64(key));
    if (n !== 48 && n !== 80) fail(M.ticketLength(n, key));
  }
}

const TLS: Schema = {
  certificate: required({
    type: STRING | ARRAY,
    check: (v: string | unknown[], w) => {
      if (Array.isArray(v) && v.length === 0) fail(M.certificateEmpty);
      for (const name of Array.isArray(v) ? v : [v]) {
        if (typeof name !== 'string') fail(M.certificateStrings);
        if (!w.ctx.certificates.has(name)) fail(M.certificateMissing(name));
      }
    },
  }),
  conf_commands: { type: OBJECT, check: eachMember((name, value) => checkType(name, value, STRING)) },
  session: object(() => SESSION),
};

const LISTENER: Schema = {
  pass: template({ type: STRING, check: passCheck }),
  application: {
    type: STRING,
    check: (v: string, w) => { if (!has(w.root.applications, v)) fail(M.listenerApp(v)); },
  },
  forwarded: {
    type: OBJECT,
    check: (v: Json, w) => {
      if (!Object.hasOwn(v, 'client_ip') && !Object.hasOwn(v, 'protocol')) fail(M.forwarded);
      validateObject(v, FORWARDED, w);
    },
  },
  client_ip: object(() => CLIENT_IP),
  // A "number" slot: Unit truncates a fraction to an integer before the range check.
  backlog: { type: NUMBER, check: (v: number) => range(-1, INT32_MAX, M.backlogMin, M.backlogMax)(Math.trunc(v)) },
  tls: object(() => TLS),
};

function listener(name: string, value: unknown, w: Walk): void {
  if (!parseListenerName(name)) fail(M.listenerAddress(name));
  checkType(name, value, OBJECT);
  validateObject(value as Json, LISTENER, w);
}

// ---------------------------------------------------------------------------
// Routes and actions (§6.5).

const ACTION_COMMON: Schema = {
  rewrite: template(str),
  response_headers: { type: OBJECT, check: eachMember(responseHeader) },
};

/** RFC 9110 token: what Node accepts as a header field name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function responseHeader(name: string, value: unknown): void {
  if (name === '') fail(M.headerNameEmpty);
  if (name === 'Content-Length') fail(M.headerContentLength);
  if (!TOKEN.test(name)) fail(M.headerNameToken(name));
  if (value === null) return;
  if (typeof value !== 'string') fail(M.headerValueType(name));
  if (isTemplate(value)) checkTemplate(name, value);
  if (/[\0-\x08\n-\x1f\x7f]/.test(value)) fail(M.headerValueControl(name));
}

const PASS_ACTION: Schema = {
  pass: template({ type: STRING, check: passCheck }),
  ...ACTION_COMMON,
};

const RETURN_ACTION: Schema = {
  return: { type: INTEGER, check: (v: number) => { if (v < 0 || v > 999) fail(M.returnRange); } },
  location: template(str),
  ...ACTION_COMMON,
};

const SHARE_ACTION: Schema = {
  share: {
    type: STRING | ARRAY,
    check: (v: string | unknown[]) => {
      if (Array.isArray(v) && v.length === 0) fail(M.shareEmpty);
      for (const path of Array.isArray(v) ? v : [v]) {
        if (typeof path !== 'string') fail(M.shareStrings);
        if (isTemplate(path)) checkTemplate('share', path);
      }
    },
  },
  index: str,
  types: patterns('types'),
  fallback: { type: OBJECT, check: (v: Json, w) => action(v, w) },
  chroot: template(str),
  follow_symlinks: bool,
  traverse_mounts: bool,
  ...ACTION_COMMON,
};

const PROXY_ACTION: Schema = {
  proxy: {
    type: STRING,
    check: (v: string) => {
      const http = v.startsWith('http://');
      if (http && parseListenerName(v.slice(7))) return;
      // Unit quotes the address with the scheme already cut off.
      fail(M.proxyAddress(http ? v.slice(7) : v));
    },
  },
  ...ACTION_COMMON,
};

/** The action kinds, in the order Unit looks for them; exactly one must be present. */
const ACTION_KINDS: ReadonlyArray<readonly [string, Schema]> = [
  ['pass', PASS_ACTION],
  ['return', RETURN_ACTION],
  ['share', SHARE_ACTION],
  ['proxy', PROXY_ACTION],
];

function action(value: Json, w: Walk): void {
  let schema: Schema | undefined;
  for (const [kind, members] of ACTION_KINDS) {
    if (!Object.hasOwn(value, kind)) continue;
    if (schema) fail(M.actionMany);
    schema = members;
  }
  if (!schema) fail(M.actionNone);
  validateObject(value, schema, w);
}

const MATCH: Schema = {
  method: patterns('method'),
  scheme: {
    type: STRING,
    check: (v: string) => { if (!/^https?$/i.test(v)) fail(M.scheme); },
  },
  host: patterns('host'),
  source: addresses,
  destination: addresses,
  uri: encodedPatterns('uri'),
  query: encodedPatterns('query'),
  arguments: { type: OBJECT | ARRAY, check: argumentSets },
  headers: { type: OBJECT | ARRAY, check: patternSets('headers') },
  cookies: { type: OBJECT | ARRAY, check: patternSets('cookies') },
  if: { type: STRING, check: ifCheck },
};

const ROUTE_STEP: Schema = {
  match: object(() => MATCH),
  action: { type: OBJECT, check: (v: Json, w) => action(v, w) },
};

function steps(value: unknown[], w: Walk): void {
  for (const step of value) {
    if (!isObject(step)) fail(M.routesObjects);
    validateObject(step, ROUTE_STEP, w);
  }
}

const routes: Check = (v: unknown[] | Json, w) => {
  if (Array.isArray(v)) {
    steps(v, w);
    return;
  }
  for (const [name, route] of Object.entries(v)) {
    checkType(name, route, ARRAY);
    steps(route as unknown[], w);
  }
};

// ---------------------------------------------------------------------------
// Applications (§6.6, applications.md §2–3).

const stringElements = (name: string, noNul: boolean) => (v: unknown[]): void => {
  for (const s of v) {
    if (typeof s !== 'string') fail(M.arrayStrings(name));
    if (noNul && s.includes('\0')) fail(M.arrayNul(name));
  }
};

const stringArray = (name: string, noNul: boolean): Rule => ({ type: ARRAY, check: stringElements(name, noNul) });

function environmentVariable(name: string, value: unknown): void {
  if (name === '') fail(M.envNameEmpty);
  if (name.includes('\0')) fail(M.envNameNul);
  if (name.includes('=')) fail(M.envNameEquals);
  if (typeof value !== 'string') fail(M.envValueType(name));
  if (value.includes('\0')) fail(M.envValueNul(name));
}

const PROCESSES: Schema = { spare: int, max: int, idle_timeout: int };

const processes: Check = (v: number | Json, w) => {
  if (typeof v === 'number') {
    range(1, INT32_MAX, M.processesMin, M.processesMax)(v);
    return;
  }
  validateObject(v, PROCESSES, w);
  const spare = (v.spare as number | undefined) ?? 0;
  const max = (v.max as number | undefined) ?? 1;
  const idle = (v.idle_timeout as number | undefined) ?? 15;
  range(0, INT32_MAX, M.spareNegative, M.spareMax)(spare);
  range(1, INT32_MAX, M.maxMin, M.maxMax)(max);
  if (max < spare) fail(M.spareAboveMax);
  range(0, Math.floor(INT32_MAX / 1000), M.idleNegative, M.idleMax)(idle);
};

const LIMITS: Schema = { timeout: int, requests: int, shm: int };

const PROCMAP: Schema = { container: required(int), host: required(int), size: required(int) };

const procmap = (name: string): Rule => ({
  type: ARRAY,
  check: (v: unknown[], w) => {
    for (const entry of v) {
      if (!isObject(entry)) fail(M.arrayObjects(name));
      validateObject(entry, PROCMAP, w);
    }
  },
});

const NAMESPACES: Schema = {
  credential: bool, pid: bool, network: bool, mount: bool, uname: bool, cgroup: bool,
};

const AUTOMOUNT: Schema = { language_deps: bool, tmpfs: bool, procfs: bool };

const CGROUP: Schema = {
  path: required({
    type: STRING,
    check: (v: string) => {
      if (Buffer.byteLength(v, 'utf8') >= CGROUP_PATH_MAX) fail(M.cgroupLong(v));
      if (v === '' || v.includes('\0') || `/${v}/`.includes('/../')) fail(M.cgroupInvalid(v));
    },
  }),
};

const ISOLATION: Schema = {
  namespaces: object(() => NAMESPACES),
  uidmap: procmap('uidmap'),
  gidmap: procmap('gidmap'),
  rootfs: str,
  automount: object(() => AUTOMOUNT),
  new_privs: bool,
  cgroup: object(() => CGROUP),
};

const COMMON_APP: Schema = {
  type: str,
  limits: object(() => LIMITS),
  processes: { type: INTEGER | OBJECT, check: processes },
  user: str,
  group: str,
  working_directory: str,
  environment: { type: OBJECT, check: eachMember(environmentVariable) },
  isolation: object(() => ISOLATION),
  stdout: str,
  stderr: str,
};

const threads: Rule = { type: INTEGER, check: range(1, INT32_MAX, M.threadsMin, M.threadsMax) };
const threadStackSize: Rule = {
  type: INTEGER,
  check: (v: number) => {
    if (v < THREAD_STACK_MIN) fail(M.stackMin(THREAD_STACK_MIN));
    if (v % PAGE_SIZE !== 0) fail(M.stackPage(PAGE_SIZE));
  },
};

/** A member that may not sit next to `targets`; its type is still checked first. */
const exclusive = (type: number): Rule => ({ type, check: (_v, _w, name) => fail(M.targetsExclusive(name)) });

const targets = (schema: () => Schema): Rule => ({
  type: OBJECT,
  check: (v: Json, w) => {
    if (Object.keys(v).length > 254) fail(M.targetsMax);
    for (const [name, target] of Object.entries(v)) {
      if (name === '') fail(M.targetNameEmpty);
      if (!isObject(target)) fail(M.targetObject(name));
      validateObject(target, schema(), w);
    }
  },
});

const EXTERNAL: Schema = {
  executable: required(str),
  arguments: stringArray('arguments', true),
  ...COMMON_APP,
};

const PYTHON_COMMON: Schema = {
  home: str,
  path: {
    type: STRING | ARRAY,
    check: (v: unknown) => { if (Array.isArray(v)) stringElements('path', false)(v); },
  },
  protocol: { type: STRING, check: (v: string) => { if (v !== 'wsgi' && v !== 'asgi') fail(M.pythonProtocol); } },
  threads,
  thread_stack_size: threadStackSize,
  ...COMMON_APP,
};

const pythonPrefix: Rule = { type: STRING, check: (v: string) => { if (!v.startsWith('/')) fail(M.pythonPrefix); } };

const PYTHON_TARGET: Schema = {
  module: required(str),
  callable: str,
  factory: bool,
  prefix: pythonPrefix,
};

const PYTHON: Schema = { ...PYTHON_TARGET, ...PYTHON_COMMON };

const PYTHON_WITH_TARGETS: Schema = {
  module: exclusive(STRING),
  callable: exclusive(STRING),
  factory: exclusive(BOOLEAN),
  prefix: exclusive(STRING),
  targets: targets(() => PYTHON_TARGET),
  ...PYTHON_COMMON,
};

const PHP_OPTION = (name: string, value: unknown): void => {
  if (name === '') fail(M.phpOptionEmpty);
  if (typeof value !== 'string') fail(M.phpOptionType(name));
};

const PHP_OPTIONS: Schema = {
  file: str,
  admin: { type: OBJECT, check: eachMember(PHP_OPTION) },
  user: { type: OBJECT, check: eachMember(PHP_OPTION) },
};

const PHP_COMMON: Schema = { options: object(() => PHP_OPTIONS), ...COMMON_APP };

const PHP_TARGET: Schema = { root: required(str), script: str, index: str };

const PHP: Schema = { ...PHP_TARGET, ...PHP_COMMON };

const PHP_WITH_TARGETS: Schema = {
  root: exclusive(ANY),
  script: exclusive(ANY),
  index: exclusive(ANY),
  targets: targets(() => PHP_TARGET),
  ...PHP_COMMON,
};

const PERL: Schema = { script: required(str), threads, thread_stack_size: threadStackSize, ...COMMON_APP };

const RUBY: Schema = { script: required(str), threads, hooks: str, ...COMMON_APP };

const JAVA: Schema = {
  classpath: stringArray('classpath', true),
  webapp: required(str),
  options: stringArray('options', true),
  unit_jars: str,
  threads,
  thread_stack_size: threadStackSize,
  ...COMMON_APP,
};

const WASM_ACCESS: Schema = { filesystem: { type: ARRAY } };

const WASM: Schema = {
  module: required(str),
  request_handler: required(str),
  malloc_handler: required(str),
  free_handler: required(str),
  module_init_handler: str,
  module_end_handler: str,
  request_init_handler: str,
  request_end_handler: str,
  response_end_handler: str,
  access: object(() => WASM_ACCESS),
  ...COMMON_APP,
};

const WASM_WASI_COMPONENT: Schema = {
  component: required(str),
  access: object(() => WASM_ACCESS),
  ...COMMON_APP,
};

/** Member table per language; Python and PHP switch tables when `targets` is present. */
const APP_SCHEMAS: Readonly<Record<AppLanguage, (app: Json) => Schema>> = {
  external: () => EXTERNAL,
  python: (app) => (Object.hasOwn(app, 'targets') ? PYTHON_WITH_TARGETS : PYTHON),
  php: (app) => (Object.hasOwn(app, 'targets') ? PHP_WITH_TARGETS : PHP),
  perl: () => PERL,
  ruby: () => RUBY,
  java: () => JAVA,
  wasm: () => WASM,
  'wasm-wasi-component': () => WASM_WASI_COMPONENT,
};

function application(name: string, value: unknown, w: Walk): void {
  checkType(name, value, OBJECT);
  const app = value as Json;
  if (!Object.hasOwn(app, 'type')) fail(M.appType);
  checkType('type', app.type, STRING);
  const type = app.type as string;
  if (!findAppModule(type, w.ctx.modules)) fail(M.appModule(type));
  validateObject(app, APP_SCHEMAS[parseAppType(type)!.language](app), w);
}

// ---------------------------------------------------------------------------
// Upstreams (§6.7).

const SERVER: Schema = {
  weight: {
    type: NUMBER,
    check: (v: number) => {
      if (v < 0) fail(M.weightNegative);
      if (v > 1000000) fail(M.weightMax);
    },
  },
};

function server(name: string, value: unknown, w: Walk): void {
  checkType(name, value, OBJECT);
  if (!parseListenerName(name)) fail(M.serverAddress(name));
  validateObject(value as Json, SERVER, w);
}

const UPSTREAM: Schema = { servers: { type: OBJECT, check: eachMember(server) } };

function upstream(name: string, value: unknown, w: Walk): void {
  checkType(name, value, OBJECT);
  validateObject(value as Json, UPSTREAM, w);
  if (!Object.hasOwn(value as Json, 'servers')) fail(M.upstreamServers(name));
}

// ---------------------------------------------------------------------------
// Access log (§6.8).

function logFormatField(name: string, value: unknown): void {
  if (name === '') fail(M.logFormatName);
  if (typeof value !== 'string') fail(M.logFormatValue);
  if (isTemplate(value)) checkTemplate(name, value);
}

const ACCESS_LOG: Schema = {
  path: str,
  format: {
    type: STRING | OBJECT,
    check: (v: string | Json) => {
      if (typeof v === 'string') logFormatField('format', v);
      else for (const [name, field] of Object.entries(v)) logFormatField(name, field);
    },
  },
  if: { type: STRING, check: ifCheck },
};

const accessLog: Check = (v: string | Json, w) => {
  if (typeof v === 'string') return;
  validateObject(v, ACCESS_LOG, w);
  if (typeof v.path !== 'string' || v.path === '') fail(M.logPathEmpty);
};

// ---------------------------------------------------------------------------
// Settings (§6.9).

const mimeTypes: Check = (v: Json) => {
  // Extensions are compared case-insensitively, as the static handler looks them up.
  const seen = new Map<string, string>();
  for (const [type, value] of Object.entries(v)) {
    checkType(type, value, STRING | ARRAY);
    for (const ext of Array.isArray(value) ? value : [value]) {
      if (typeof ext !== 'string') fail(M.mimeStrings(type));
      if (ext === '') fail(M.mimeEmpty(type));
      const key = ext.toLowerCase();
      const previous = seen.get(key);
      if (previous !== undefined) fail(M.mimeDuplicate(ext, previous, type));
      seen.set(key, type);
    }
  }
};

/** Content codings Junction can produce (Node's zlib; zstd only where Node has it). */
export const COMPRESSORS: ReadonlySet<string> = new Set([
  'identity', 'deflate', 'gzip', 'br',
  ...('createZstdCompress' in zlib ? ['zstd'] : []),
]);

const COMPRESSOR: Schema = {
  encoding: required({ type: STRING, check: (v: string) => { if (!COMPRESSORS.has(v)) fail(M.compressor(v)); } }),
  level: int,
  min_length: int,
};

const COMPRESSION: Schema = {
  types: patterns('types'),
  // A single object is taken as a one-element array (control-api.md §12 item 2).
  compressors: {
    type: OBJECT | ARRAY,
    check: (v: Json | unknown[], w) => {
      for (const c of Array.isArray(v) ? v : [v]) {
        if (!isObject(c)) fail(M.compressorsObjects);
        validateObject(c, COMPRESSOR, w);
      }
    },
  },
};

const WEBSOCKET: Schema = { read_timeout: int, keepalive_interval: int, max_frame_size: int };

const STATIC: Schema = { mime_types: { type: OBJECT, check: mimeTypes } };

const HTTP: Schema = {
  header_read_timeout: int,
  body_read_timeout: int,
  send_timeout: int,
  idle_timeout: int,
  large_header_buffer_size: int,
  large_header_buffers: int,
  body_buffer_size: int,
  max_body_size: int,
  body_temp_path: str,
  discard_unsafe_fields: bool,
  websocket: object(() => WEBSOCKET),
  static: object(() => STATIC),
  log_route: bool,
  server_version: bool,
  chunked_transform: bool,
  compression: object(() => COMPRESSION),
};

/** `js_module`: a name or names of uploaded JS modules (control-api.md §6.9, §6.10). */
const jsModules: Check = (v: string | unknown[], w) => {
  for (const name of Array.isArray(v) ? v : [v]) {
    if (typeof name !== 'string') fail(M.arrayStrings('js_module'));
    if (!w.ctx.jsModules?.has(name)) fail(M.jsModuleMissing(name));
  }
};

// `telemetry` is absent: Junction behaves as a build without OpenTelemetry,
// where it is an unknown parameter (control-api.md §6.0).
const SETTINGS: Schema = {
  listen_threads: { type: INTEGER, check: range(1, INT32_MAX, M.listenThreadsMin, M.listenThreadsMax) },
  http: object(() => HTTP),
  js_module: { type: STRING | ARRAY, check: jsModules },
};

// ---------------------------------------------------------------------------
// Root (§6.1).

const ROOT: Schema = {
  settings: object(() => SETTINGS),
  listeners: { type: OBJECT, check: eachMember(listener) },
  routes: { type: ARRAY | OBJECT, check: routes },
  applications: { type: OBJECT, check: eachMember(application) },
  upstreams: { type: OBJECT, check: eachMember(upstream) },
  access_log: { type: STRING | OBJECT, check: accessLog },
};

/**
 * Validates a complete candidate configuration (control-api.md §6, §6.10).
 *
 * @param tree the whole configuration as parsed by parseJson()
 * @param ctx available language modules and uploaded certificate and JS
 *   module names, for `type`, `tls.certificate` and `js_module` checks
 * @returns null when valid, else the `detail` of the first violation, in
 *   Unit's wording (e.g. `Unknown parameter "x".`,
 *   `Request "pass" points to invalid location "routes".`), for a
 *   400 `Invalid configuration.` answer.
 *
 * Not checked here, as in Unit: listeners without `pass` and route steps
 * without `action` (they fail when applied, §6.11). Junction additionally
 * refuses response header names and values Node cannot send.
 */
export function validateConfig(tree: unknown, ctx: ValidationContext): string | null {
  try {
    if (!isObject(tree)) fail(M.rootType(expected(OBJECT), word(tree)));
    validateObject(tree, ROOT, { root: tree, ctx });
    return null;
  } catch (err) {
    if (err instanceof Invalid) return err.detail;
    throw err;
  }
}
