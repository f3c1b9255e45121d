/**
 * Unit's JSON dialect: what control API bodies and `conf.json` may contain
 * (spec/control-api.md §5). Standard JSON plus `//` and `/* *\/` comments,
 * one trailing comma in arrays and objects, and an optional UTF-8 BOM; minus
 * duplicate member names, leading zeros and numbers beyond 14 characters or
 * the signed 64-bit range. Errors carry Unit's `detail` texts and a byte
 * offset so the controller can answer `Invalid JSON.` exactly as Unit does.
 */
import { JSON_MESSAGES as J } from './messages.ts';

/** Where a JSON error is, as put in the control API's `location` member (control-api.md §2.3). */
export interface JsonLocation {
  /** Byte offset in the body, counted after a skipped BOM. */
  offset: number;
  /** 1-based line (LF-separated); absent when the line up to the error is not valid UTF-8. */
  line?: number;
  /** 1-based position in code points within the line; absent with `line`. */
  column?: number;
}

/** parseJson() outcome: the value, or Unit's `detail` and the error location. */
export type JsonParseResult =
  | { ok: true; value: unknown }
  | { ok: false; detail: string; location: JsonLocation };

/** Longest accepted number lexeme, sign, point and exponent included (§5.3). */
const MAX_NUMBER_LENGTH = 14;
/** Strings beyond this many bytes are refused (§5.4). */
const MAX_STRING_BYTES = 2147483647;
/** Nesting limit: deeper bodies get an `Invalid JSON.` instead of exhausting the stack. */
const MAX_DEPTH = 1000;
/** Math.abs(x) above this is out of range (the double nearest to 2^63 - 1). */
const INT64_MAX = 9223372036854775807;
/** Smallest positive normal double: smaller non-zero results count as underflow, as strtod reports. */
const MIN_NORMAL = 2.2250738585072014e-308;

class Fail {
  readonly detail: string;
  readonly pos: number;
  constructor(detail: string, pos: number) {
    this.detail = detail;
    this.pos = pos;
  }
}

const CH_TAB = 0x09, CH_LF = 0x0a, CH_CR = 0x0d, CH_SP = 0x20;
const CH_QUOTE = 0x22, CH_COMMA = 0x2c, CH_MINUS = 0x2d, CH_DOT = 0x2e, CH_SLASH = 0x2f;
const CH_0 = 0x30, CH_9 = 0x39, CH_COLON = 0x3a, CH_STAR = 0x2a, CH_BACKSLASH = 0x5c;
const CH_LBRACKET = 0x5b, CH_RBRACKET = 0x5d, CH_LBRACE = 0x7b, CH_RBRACE = 0x7d;

const isDigit = (c: number): boolean => c >= CH_0 && c <= CH_9;

function hexValue(c: number): number {
  if (c >= CH_0 && c <= CH_9) return c - CH_0;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * Defines `obj[key] = value` as an own data property, so that a member named
 * `__proto__` is an ordinary member and never touches the prototype.
 */
export function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

class Parser {
  private readonly b: Buffer;
  private readonly end: number;
  private depth = 0;

  constructor(b: Buffer) {
    this.b = b;
    this.end = b.length;
  }

  /** Skips whitespace and comments; an unclosed comment leaves the position at its first `/`. */
  space(p: number): number {
    const b = this.b, end = this.end;
    while (p < end) {
      const c = b[p];
      if (c === CH_SP || c === CH_TAB || c === CH_LF || c === CH_CR) {
        p++;
        continue;
      }
      if (c !== CH_SLASH) return p;
      const next = p + 1 < end ? b[p + 1] : -1;
      if (next === CH_SLASH) {
        // A final `//` comment without LF is accepted (Unit refuses it; §12 item 10 allows this).
        const lf = b.indexOf(CH_LF, p + 2);
        p = lf < 0 ? end : lf + 1;
        continue;
      }
      if (next === CH_STAR) {
        let q = p + 2;
        let closed = -1;
        while (q + 1 < end) {
          if (b[q] === CH_STAR && b[q + 1] === CH_SLASH) {
            closed = q + 2;
            break;
          }
          q++;
        }
        if (closed < 0) return p;
        p = closed;
        continue;
      }
      return p;
    }
    return p;
  }

  parseDocument(): unknown {
    const start = this.space(0);
    if (start === this.end) throw new Fail(J.empty, 0);
    const [value, p] = this.value(start);
    const rest = this.space(p);
    if (rest !== this.end) throw new Fail(J.trailing, rest);
    return value;
  }

  value(p: number): [unknown, number] {
    const b = this.b, end = this.end;
    const c = b[p];
    switch (c) {
      case CH_LBRACE: return this.object(p);
      case CH_LBRACKET: return this.array(p);
      case CH_QUOTE: return this.string(p);
      case 0x74: // t
        if (this.literal(p, 'true')) return [true, p + 4];
        break;
      case 0x66: // f
        if (this.literal(p, 'false')) return [false, p + 5];
        break;
      case 0x6e: // n
        if (this.literal(p, 'null')) return [null, p + 4];
        break;
      default: {
        const first = c === CH_MINUS ? (p + 1 < end ? b[p + 1] : -1) : c;
        if (!isDigit(first)) break;
        const [num, q] = this.number(p);
        if (q === end) return [num, q];
        switch (b[q]) {
          case CH_SP: case CH_TAB: case CH_CR: case CH_LF: case CH_COMMA:
          case CH_RBRACE: case CH_RBRACKET: case CH_LBRACE: case CH_LBRACKET:
          case CH_QUOTE: case CH_SLASH:
            return [num, q];
        }
      }
    }
    throw new Fail(J.value, p);
  }

  literal(p: number, word: string): boolean {
    if (this.end - p < word.length) return false;
    for (let i = 0; i < word.length; i++) {
      if (this.b[p + i] !== word.charCodeAt(i)) return false;
    }
    return true;
  }

  enter(p: number): void {
    if (++this.depth > MAX_DEPTH) throw new Fail(J.nesting, p);
  }

  object(start: number): [unknown, number] {
    this.enter(start);
    const obj: Record<string, unknown> = {};
    const end = this.end;
    let p = start;
    for (;;) {
      p = this.space(p + 1);
      if (p === end) throw new Fail(J.endObject, end);
      if (this.b[p] !== CH_QUOTE) {
        if (this.b[p] === CH_RBRACE) break;
        throw new Fail(J.quote, p);
      }
      const nameAt = p;
      const [name, afterName] = this.string(p);
      if (Object.hasOwn(obj, name)) throw new Fail(J.duplicate, nameAt);
      p = this.space(afterName);
      if (p === end) throw new Fail(J.endObject, end);
      if (this.b[p] !== CH_COLON) throw new Fail(J.colon, p);
      p = this.space(p + 1);
      if (p === end) throw new Fail(J.endObject, end);
      const [member, afterValue] = this.value(p);
      setMember(obj, name, member);
      p = this.space(afterValue);
      if (p === end) throw new Fail(J.endObject, end);
      if (this.b[p] === CH_RBRACE) break;
      if (this.b[p] !== CH_COMMA) throw new Fail(J.objectNext, p);
    }
    this.depth--;
    return [obj, p + 1];
  }

  array(start: number): [unknown, number] {
    this.enter(start);
    const arr: unknown[] = [];
    const end = this.end;
    let p = start;
    for (;;) {
      p = this.space(p + 1);
      if (p === end) throw new Fail(J.endArray, end);
      if (this.b[p] === CH_RBRACKET) break;
      const [element, after] = this.value(p);
      arr.push(element);
      p = this.space(after);
      if (p === end) throw new Fail(J.endArray, end);
      if (this.b[p] === CH_RBRACKET) break;
      if (this.b[p] !== CH_COMMA) throw new Fail(J.arrayNext, p);
    }
    this.depth--;
    return [arr, p + 1];
  }

  /**
   * `start` is at the opening quote; returns the decoded string and the
   * position after the closing quote. Like Unit, the syntax of the whole
   * string (closing quote, control bytes, escapes) is checked before any
   * surrogate pair is looked at, so the first kind of error wins.
   */
  string(start: number): [string, number] {
    const b = this.b, end = this.end;
    let p = start + 1;
    let escapes = false;
    for (;;) {
      if (p >= end) throw new Fail(J.endString, end);
      const c = b[p];
      if (c === CH_QUOTE) break;
      if (c < 0x20) throw new Fail(J.control, p);
      if (c !== CH_BACKSLASH) {
        p++;
        continue;
      }
      escapes = true;
      if (p + 1 >= end) throw new Fail(J.endString, end);
      switch (b[p + 1]) {
        case CH_QUOTE: case CH_BACKSLASH: case CH_SLASH:
        case 0x62: case 0x66: case 0x6e: case 0x72: case 0x74:
          p += 2;
          continue;
        case 0x75:
          for (let i = 2; i < 6; i++) {
            if (p + i >= end) throw new Fail(J.endString, end);
            if (hexValue(b[p + i]) < 0) throw new Fail(J.escape, p + i);
          }
          p += 6;
          continue;
        default:
          throw new Fail(J.backslash, p);
      }
    }
    const close = p;
    if (close - start - 1 > MAX_STRING_BYTES) throw new Fail(J.stringLong, start + 1);
    if (!escapes) return [b.toString('utf8', start + 1, close), close + 1];
    return [this.decode(start + 1, close), close + 1];
  }

  /** Decodes the escapes of a string body already checked by string(). */
  decode(from: number, to: number): string {
    const b = this.b;
    let out = '';
    let chunk = from;
    let p = from;
    while (p < to) {
      if (b[p] !== CH_BACKSLASH) {
        p++;
        continue;
      }
      if (p > chunk) out += b.toString('utf8', chunk, p);
      const e = b[p + 1];
      if (e !== 0x75) {
        out += e === 0x62 ? '\b' : e === 0x66 ? '\f' : e === 0x6e ? '\n' : e === 0x72 ? '\r'
          : e === 0x74 ? '\t' : String.fromCharCode(e);
        p += 2;
      } else {
        const escapeAt = p;
        const unit = this.hex4(p + 2);
        p += 6;
        if (unit >= 0xd800 && unit <= 0xdfff) {
          if (unit > 0xdbff || !(p + 1 < to && b[p] === CH_BACKSLASH && b[p + 1] === 0x75)) {
            throw new Fail(J.surrogate, escapeAt);
          }
          const low = this.hex4(p + 2);
          p += 6;
          if (low < 0xdc00 || low > 0xdfff) throw new Fail(J.surrogatePair, escapeAt);
          out += String.fromCharCode(unit, low);
        } else {
          out += String.fromCharCode(unit);
        }
      }
      chunk = p;
    }
    if (to > chunk) out += b.toString('utf8', chunk, to);
    return out;
  }

  /** Four hex digits at `p`, already known to be valid. */
  hex4(p: number): number {
    let v = 0;
    for (let i = 0; i < 4; i++) v = (v << 4) | hexValue(this.b[p + i]);
    return v;
  }

  /** Number grammar and limits of §5.3; `start` is at `-` or the first digit. */
  number(start: number): [number, number] {
    const b = this.b, end = this.end;
    const s = b[start] === CH_MINUS ? start + 1 : start;
    let p = s;
    let dot = -1;
    while (p < end) {
      const c = b[p];
      if (isDigit(c)) {
        p++;
        continue;
      }
      if (c === CH_DOT && dot < 0) {
        dot = p++;
        continue;
      }
      break;
    }
    if (dot >= 0 && p - dot <= 1) throw new Fail(J.fraction, s);
    const intEnd = dot >= 0 ? dot : p;
    // Unit quirk kept: the check looks at the first byte of the lexeme, so `-01` passes.
    if (intEnd - s > 1 && b[start] === CH_0) throw new Fail(J.leadingZero, s);
    if (p < end && (b[p] === 0x65 || b[p] === 0x45)) {
      p++;
      if (p < end && (b[p] === 0x2b || b[p] === CH_MINUS)) p++;
      const digits = p;
      while (p < end && isDigit(b[p])) p++;
      if (p === digits) throw new Fail(J.exponent, start);
    }
    if (p - start > MAX_NUMBER_LENGTH) throw new Fail(J.numberLong, start);
    const lexeme = b.toString('latin1', start, p);
    const num = Number(lexeme);
    const magnitude = Math.abs(num);
    if (!Number.isFinite(num) || magnitude > INT64_MAX
      || (magnitude < MIN_NORMAL && /[1-9]/.test(lexeme.split(/[eE]/)[0]))) {
      throw new Fail(J.numberRange, start);
    }
    return [num === 0 ? 0 : num, p];
  }
}

/**
 * Line and column of byte `pos` as Unit reports them: lines split on LF,
 * column = 1 + code points between the line start and `pos`. Returns
 * undefined when those bytes are not valid UTF-8.
 */
export function jsonPosition(body: Buffer, pos: number): { line: number; column: number } | undefined {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < pos; i++) {
    if (body[i] === CH_LF) {
      line++;
      lineStart = i + 1;
    }
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body.subarray(lineStart, pos));
  } catch {
    return undefined;
  }
  let column = 1;
  for (const _ of text) column++;
  return { line, column };
}

/**
 * Parses a control API body or `conf.json` in Unit's JSON dialect (control-api.md §5).
 *
 * - A leading UTF-8 BOM is skipped; offsets count from after it.
 * - Strings: raw bytes are decoded as UTF-8 (invalid sequences become U+FFFD);
 *   `\u0000` is accepted.
 * - Numbers become JS numbers (`2.0` → 2; integer vs fraction is decided by value).
 * - Objects are plain objects in member order (JS orders integer-like names first);
 *   a `__proto__` member is an ordinary own property.
 *
 * Never throws: failures return the `detail` text (first sentence as in Unit,
 * §5.2) and the location of the offending byte (§2.3).
 */
export function parseJson(body: Buffer | string): JsonParseResult {
  let buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3);
  try {
    return { ok: true, value: new Parser(buf).parseDocument() };
  } catch (err) {
    if (!(err instanceof Fail)) throw err;
    const location: JsonLocation = { offset: err.pos };
    const at = jsonPosition(buf, err.pos);
    if (at) {
      location.line = at.line;
      location.column = at.column;
    }
    return { ok: false, detail: err.detail, location };
  }
}

/**
 * Compact JSON text of a configuration value, as stored in `conf.json`
 * (control-api.md §7.4): no whitespace, numbers in canonical JS form.
 */
export function serializeJson(value: unknown): string {
  return JSON.stringify(value) ?? 'null';
}
