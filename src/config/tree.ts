/**
 * Addressing inside the configuration tree through control API URLs, and the
 * GET/PUT/POST/DELETE operations on it (spec/control-api.md §3.2, §4).
 * Pure functions over plain JSON values; the input tree is never mutated:
 * modifying operations copy the containers along the path and share the rest.
 */
import { setMember } from './json.ts';

/** Path tokens longer than this many bytes (before decoding) address nothing (§4.1 step 4). */
export const MAX_TOKEN_BYTES = 256;

/** Outcome of PUT/POST/DELETE: the new tree, or the status to answer (404 `Value doesn't exist.`, 405 `Method isn't allowed.`). */
export type TreeResult = { ok: true; tree: unknown } | { ok: false; status: 404 | 405 };
/** Outcome of GET: the addressed value, or 404. */
export type GetResult = { ok: true; value: unknown } | { ok: false; status: 404 };

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Bytes of a request target as Node hands it over (one char per byte); other chars as UTF-8. */
function targetBytes(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c <= 0xff) out.push(c);
    else out.push(...Buffer.from(ch, 'utf8'));
  }
  return out;
}

const utf8 = (bytes: number[]): string => Buffer.from(bytes).toString('utf8');

/**
 * HTTP-level normalization of a control API request target, then removal of
 * one trailing `/` (control-api.md §4.1 steps 1–2, §3.1).
 *
 * - `?query` and `#fragment` are dropped (only literal `?`/`#` separate).
 * - `%HH` escapes are decoded, except `%2F`/`%2f` and `%25`, which stay as
 *   written; a decoded `.` counts for dot segments.
 * - Runs of `/` collapse; `.` segments vanish; `..` removes the previous segment.
 * - Bytes are decoded as UTF-8 into the returned string.
 *
 * Returns null where Unit closes the connection: target not starting with `/`,
 * malformed escape (`%`, `%4`, `%zz`), `%00`, or `..` climbing above the root.
 * The root stays `/`; `/config/` becomes `/config`.
 */
export function normalizeControlTarget(rawTarget: string): string | null {
  let end = rawTarget.length;
  const q = rawTarget.indexOf('?');
  const h = rawTarget.indexOf('#');
  if (q >= 0) end = q;
  if (h >= 0 && h < end) end = h;
  const bytes = targetBytes(rawTarget.slice(0, end));
  if (bytes[0] !== 0x2f) return null;

  // Decode escapes segment by segment; a kept %2F never splits a segment.
  const segments: number[][] = [];
  let current: number[] = [];
  for (let i = 1; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) {
      segments.push(current);
      current = [];
      continue;
    }
    const c = bytes[i];
    if (c !== 0x25) {
      current.push(c);
      continue;
    }
    const hi = i + 1 < bytes.length ? hexValue(bytes[i + 1]) : -1;
    const lo = i + 2 < bytes.length ? hexValue(bytes[i + 2]) : -1;
    if (hi < 0 || lo < 0) return null;
    const v = (hi << 4) | lo;
    if (v === 0) return null;
    if (v === 0x2f || v === 0x25) current.push(0x25, bytes[i + 1], bytes[i + 2]);
    else current.push(v);
    i += 2;
  }

  const out: number[][] = [];
  for (const seg of segments) {
    if (seg.length === 0 || (seg.length === 1 && seg[0] === 0x2e)) continue;
    if (seg.length === 2 && seg[0] === 0x2e && seg[1] === 0x2e) {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(seg);
  }
  // Empty and dot segments leave at most a trailing slash, which is the one §3.1 drops.
  if (out.length === 0) return '/';
  return out.map((seg) => '/' + utf8(seg)).join('');
}

/**
 * Splits what follows an endpoint prefix (e.g. `/listeners/*:8080` after
 * `/config`) into tree tokens, percent-decoding each token once (§4.1 step 3):
 * `%2F` gives `/` inside a key, `%25` gives `%`. An empty rest or `/` is the
 * root (`[]`). Returns null when a token is longer than 256 bytes before
 * decoding or holds a malformed escape — such a path addresses nothing.
 */
export function splitConfigPath(pathAfterPrefix: string): string[] | null {
  let rest = pathAfterPrefix;
  if (rest.startsWith('/')) rest = rest.slice(1);
  if (rest === '') return [];
  const tokens: string[] = [];
  for (const raw of rest.split('/')) {
    const bytes = Buffer.from(raw, 'utf8');
    if (bytes.length > MAX_TOKEN_BYTES) return null;
    const decoded: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0x25) {
        decoded.push(bytes[i]);
        continue;
      }
      const hi = i + 1 < bytes.length ? hexValue(bytes[i + 1]) : -1;
      const lo = i + 2 < bytes.length ? hexValue(bytes[i + 2]) : -1;
      if (hi < 0 || lo < 0) return null;
      decoded.push((hi << 4) | lo);
      i += 2;
    }
    tokens.push(utf8(decoded));
  }
  return tokens;
}

/** Percent-encodes a tree key so that splitConfigPath() gives it back (for building URLs). */
export function encodeConfigToken(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const safe = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a)
      || (byte >= 0x61 && byte <= 0x7a) || '-._~:@!$&\'()*+,;='.includes(String.fromCharCode(byte));
    out += safe ? String.fromCharCode(byte) : '%' + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Array index token: decimal digits only, leading zeros allowed (§4.2); -1 when not an index. */
function arrayIndex(token: string): number {
  if (!/^[0-9]+$/.test(token)) return -1;
  const n = Number(token);
  return Number.isSafeInteger(n) ? n : -1;
}

/** Resolves one token against a node (§4.2); undefined when not found. */
function child(node: unknown, token: string): { value: unknown } | undefined {
  if (Array.isArray(node)) {
    const i = arrayIndex(token);
    return i >= 0 && i < node.length ? { value: node[i] } : undefined;
  }
  if (isObject(node)) return Object.hasOwn(node, token) ? { value: node[token] } : undefined;
  return undefined;
}

/** Copy of `node` (an array or object) with `token` set to `value`; `token` must resolve or append. */
function withChild(node: unknown, token: string, value: unknown): unknown {
  if (Array.isArray(node)) {
    const copy = node.slice();
    copy[arrayIndex(token)] = value;
    return copy;
  }
  const copy = { ...(node as Record<string, unknown>) };
  setMember(copy, token, value);
  return copy;
}

/**
 * Rebuilds the containers along `tokens` (all of which resolve) with the last
 * one replaced by `edit(last)`; returns the new root.
 */
function rebuild(tree: unknown, tokens: readonly string[], edit: (node: unknown) => unknown): unknown {
  if (tokens.length === 0) return edit(tree);
  const [head, ...rest] = tokens;
  const next = child(tree, head)!.value;
  return withChild(tree, head, rebuild(next, rest, edit));
}

/** Walks `tokens`; undefined as soon as one does not resolve. */
function walk(tree: unknown, tokens: readonly string[]): { value: unknown } | undefined {
  let node: { value: unknown } | undefined = { value: tree };
  for (const t of tokens) {
    node = child(node.value, t);
    if (!node) return undefined;
  }
  return node;
}

/**
 * GET: the value at `tokens` (§4.3). Every token must resolve, else 404.
 * The value is returned as stored (not copied).
 */
export function getAt(tree: unknown, tokens: readonly string[]): GetResult {
  const node = walk(tree, tokens);
  return node ? { ok: true, value: node.value } : { ok: false, status: 404 };
}

/**
 * PUT (§3.2, §4.3): at the root `value` replaces the tree. Elsewhere every
 * parent must exist (no auto-created intermediates → 404). Parent object:
 * the member is replaced in place or appended at the end. Parent array:
 * element replaced, or appended when the index equals the length; a larger
 * or non-numeric index → 404. Parent scalar → 404 (§12 item 1).
 */
export function putAt(tree: unknown, tokens: readonly string[], value: unknown): TreeResult {
  if (tokens.length === 0) return { ok: true, tree: value };
  const parentTokens = tokens.slice(0, -1);
  const last = tokens[tokens.length - 1];
  const parent = walk(tree, parentTokens);
  if (!parent) return { ok: false, status: 404 };
  const p = parent.value;
  if (Array.isArray(p)) {
    const i = arrayIndex(last);
    if (i < 0 || i > p.length) return { ok: false, status: 404 };
    return { ok: true, tree: rebuild(tree, parentTokens, (node) => withChild(node, last, value)) };
  }
  if (!isObject(p)) return { ok: false, status: 404 };
  return { ok: true, tree: rebuild(tree, parentTokens, (node) => withChild(node, last, value)) };
}

/**
 * POST (§3.2, §4.3): appends `value` (any JSON value, an array becomes one
 * element) to the array at `tokens`. Root → 405; missing target → 404;
 * target not an array → 405.
 */
export function postAt(tree: unknown, tokens: readonly string[], value: unknown): TreeResult {
  if (tokens.length === 0) return { ok: false, status: 405 };
  const target = walk(tree, tokens);
  if (!target) return { ok: false, status: 404 };
  if (!Array.isArray(target.value)) return { ok: false, status: 405 };
  return { ok: true, tree: rebuild(tree, tokens, (node) => [...(node as unknown[]), value]) };
}

/**
 * DELETE (§3.2, §4.3): removes the member or element at `tokens` (later
 * elements shift down). Root → the tree becomes `{}`; missing target → 404.
 */
export function deleteAt(tree: unknown, tokens: readonly string[]): TreeResult {
  if (tokens.length === 0) return { ok: true, tree: {} };
  if (!walk(tree, tokens)) return { ok: false, status: 404 };
  const parentTokens = tokens.slice(0, -1);
  const last = tokens[tokens.length - 1];
  return {
    ok: true,
    tree: rebuild(tree, parentTokens, (node) => {
      if (Array.isArray(node)) {
        const index = arrayIndex(last);
        return node.filter((_, i) => i !== index);
      }
      const copy: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
        if (k !== last) setMember(copy, k, v);
      }
      return copy;
    }),
  };
}
