/**
 * Template strings of the configuration: `$name` / `${name}` variables and
 * JavaScript template literals (spec/router.md §6.1–6.3, control-api.md §6.0).
 * Parsing happens once, when a configuration is validated or compiled; the
 * router only evaluates the parsed parts.
 */
import { M } from './messages.ts';

/** Variables with a fixed name (router.md §6.2). */
export const VARIABLES: ReadonlySet<string> = new Set([
  'uri', 'request_uri', 'method', 'host', 'remote_addr', 'request_line',
  'status', 'body_bytes_sent', 'request_time', 'time_local', 'request_id', 'dollar',
  'header_referer', 'header_user_agent',
  'response_header_connection', 'response_header_content_length',
  'response_header_transfer_encoding',
]);

/**
 * Variable families: the prefix followed by a non-empty name (router.md §6.2).
 * `response_header_` is listed before `header_` on purpose: it is tried first.
 */
export const DYNAMIC_PREFIXES = ['response_header_', 'header_', 'arg_', 'cookie_'] as const;
/** One of DYNAMIC_PREFIXES. */
export type DynamicPrefix = typeof DYNAMIC_PREFIXES[number];

/** Parameters of the function a JS template literal becomes (router.md §6.3). */
export const JS_TEMPLATE_PARAMS = ['uri', 'host', 'remoteAddr', 'args', 'headers', 'cookies', 'vars'] as const;

/** A variable reference inside a parsed template. */
export interface TemplateVariable { name: string }
/** Literal text or a variable reference. */
export type TemplatePart = string | TemplateVariable;
/** parseTemplate() result: `$` parts, or the source of a JS template literal. */
export type ParsedTemplate =
  | { js: false; parts: TemplatePart[] }
  | { js: true; source: string };

/**
 * Why a template was refused:
 * - `unknown`: a well-formed name that is no variable (`variable` set);
 * - `invalid`: bad `$` syntax (`position` = byte offset of the `$`);
 * - `unterminated`: a JS template whose literal is not closed by the last character;
 * - `syntax`: a JS template that does not compile or is not one single template
 *   literal (`message` holds the compiler's text).
 */
export type TemplateErrorKind = 'unknown' | 'invalid' | 'unterminated' | 'syntax';

/** A refused template; templateError() turns it into the validator's detail. */
export class TemplateError extends Error {
  readonly kind: TemplateErrorKind;
  readonly variable?: string;
  readonly position?: number;
  constructor(kind: TemplateErrorKind, message: string, detail: { variable?: string; position?: number } = {}) {
    super(message);
    this.name = 'TemplateError';
    this.kind = kind;
    if (detail.variable !== undefined) this.variable = detail.variable;
    if (detail.position !== undefined) this.position = detail.position;
  }
}

/**
 * True when `s` is a template: it holds a `$` or a backtick (control-api.md §6.0).
 * Such option values are parsed with parseTemplate() and skip the option's
 * normal check (e.g. `pass` target existence).
 */
export function isTemplate(s: string): boolean {
  return s.includes('$') || s.includes('`');
}

/** True for a known variable name: fixed, or a dynamic prefix with a non-empty suffix. */
export function isVariable(name: string): boolean {
  if (VARIABLES.has(name)) return true;
  return DYNAMIC_PREFIXES.some((p) => name.length > p.length && name.startsWith(p));
}

/**
 * Splits a known variable name into its family: `{ prefix, key }` for dynamic
 * ones (`header_accept_encoding` → `header_` + `accept_encoding`), undefined
 * for fixed names.
 */
export function dynamicVariable(name: string): { prefix: DynamicPrefix; key: string } | undefined {
  if (VARIABLES.has(name)) return undefined;
  for (const prefix of DYNAMIC_PREFIXES) {
    if (name.length > prefix.length && name.startsWith(prefix)) return { prefix, key: name.slice(prefix.length) };
  }
  return undefined;
}

const isNameChar = (c: number): boolean => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;

/** UTF-8 length of `s.slice(0, index)`: Unit reports byte positions. */
const byteOffset = (s: string, index: number): number => Buffer.byteLength(s.slice(0, index), 'utf8');

/**
 * Parses a template (router.md §6.1).
 *
 * - Starting with a backtick: a JS template literal; returns `{ js: true, source }`
 *   after checking that it is one literal ending at the last character and
 *   that `return «source»` compiles as the body of a function of
 *   JS_TEMPLATE_PARAMS.
 * - Otherwise: literal text and `$name` / `${name}` references; names are ASCII
 *   letters and `_`. Literal `$` is `$dollar`.
 *
 * @throws TemplateError `invalid` for a bare `$`, `$` before a non-letter, `${`,
 *   `${}` or an unclosed `${…`; `unknown` for names that are no variable
 *   (including empty dynamic suffixes such as `$arg_`); `unterminated`/`syntax`
 *   for JS templates.
 */
export function parseTemplate(s: string): ParsedTemplate {
  if (s.startsWith('`')) return { js: true, source: checkJsTemplate(s) };
  const parts: TemplatePart[] = [];
  let literal = '';
  let i = 0;
  while (i < s.length) {
    const dollar = s.indexOf('$', i);
    if (dollar < 0) {
      literal += s.slice(i);
      break;
    }
    literal += s.slice(i, dollar);
    let p = dollar + 1;
    const bracket = s.charCodeAt(p) === 0x7b;
    if (bracket) p++;
    const nameStart = p;
    while (p < s.length && isNameChar(s.charCodeAt(p))) p++;
    const name = s.slice(nameStart, p);
    let closed = !bracket;
    if (bracket && s.charCodeAt(p) === 0x7d) {
      closed = true;
      p++;
    }
    if (!closed || name === '') {
      const position = byteOffset(s, dollar);
      throw new TemplateError('invalid', `Invalid variable at position ${position}`, { position });
    }
    if (!isVariable(name)) {
      throw new TemplateError('unknown', `Unknown variable "${name}"`, { variable: name });
    }
    if (literal !== '') parts.push(literal);
    literal = '';
    parts.push({ name });
    i = p;
  }
  if (literal !== '') parts.push(literal);
  return { js: false, parts };
}

/**
 * The validator's `detail` for a refused template in option `option`
 * (control-api.md §6.0): `Unknown variable "«v»" in the "«option»" value.`,
 * `Invalid variable at position «n» in the "«option»" value.`, or for JS the
 * compiler's message.
 */
export function templateError(option: string, err: TemplateError): string {
  switch (err.kind) {
    case 'unknown': return M.templateUnknown(err.variable ?? '', option);
    case 'invalid': return M.templateInvalid(err.position ?? 0, option);
    case 'unterminated': return M.templateUnterminated(option);
    case 'syntax': return err.message;
  }
}

/** Index after the template literal that starts at `i` (a backtick), or -1 if it never closes. */
function skipTemplateLiteral(s: string, i: number): number {
  i++;
  while (i < s.length) {
    const c = s[i];
    if (c === '\\') {
      i += 2;
    } else if (c === '`') {
      return i + 1;
    } else if (c === '$' && s[i + 1] === '{') {
      i = skipExpression(s, i + 2);
      if (i < 0) return -1;
    } else {
      i++;
    }
  }
  return -1;
}

/** Index after the `}` closing a `${` substitution whose body starts at `i`, or -1. */
function skipExpression(s: string, i: number): number {
  let depth = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '"' || c === '\'') {
      i++;
      while (i < s.length && s[i] !== c) i += s[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '`') {
      i = skipTemplateLiteral(s, i);
      if (i < 0) return -1;
    } else if (c === '/' && s[i + 1] === '/') {
      const nl = s.indexOf('\n', i);
      i = nl < 0 ? s.length : nl + 1;
    } else if (c === '/' && s[i + 1] === '*') {
      const close = s.indexOf('*/', i + 2);
      i = close < 0 ? s.length : close + 2;
    } else if (c === '{') {
      depth++;
      i++;
    } else if (c === '}') {
      if (depth === 0) return i + 1;
      depth--;
      i++;
    } else {
      i++;
    }
  }
  return -1;
}

function checkJsTemplate(s: string): string {
  if (s.length === 1 || !s.endsWith('`')) {
    throw new TemplateError('unterminated', 'Unexpected end of template literal');
  }
  const end = skipTemplateLiteral(s, 0);
  if (end < 0) throw new TemplateError('unterminated', 'Unexpected end of template literal');
  if (end !== s.length) {
    throw new TemplateError('syntax', 'SyntaxError: the JS template must be a single template literal');
  }
  try {
    // Compiled only to check the syntax; the router builds its own function.
    new Function(...JS_TEMPLATE_PARAMS, `return ${s};`);
  } catch (err) {
    const e = err as Error;
    throw new TemplateError('syntax', `${e.name}: ${e.message}`);
  }
  return s;
}
