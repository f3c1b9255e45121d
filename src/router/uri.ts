/**
 * Request-target handling: split, percent-decode and normalise the path
 * (spec/router.md §2.3), and the two escaping rules Unit uses when it writes
 * a URI into a `Location` field (§4.3, §8.1).
 *
 * Paths are "byte strings": one JS char per byte (latin1), so `%C3%A9` decodes
 * to two chars and a file name reaches the file system byte for byte
 * (`Buffer.from(path, 'latin1')`). Header values use the same convention.
 */

/** Split target: decoded normalised path, raw query ('' if none), and whether a `?` was present. */
export interface SplitTarget { path: string; query: string; hasQuery: boolean }

const HEX: Int8Array = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) { t[65 + i] = 10 + i; t[97 + i] = 10 + i; }
  return t;
})();

/** Value of a hex digit char code, -1 when not a hex digit. */
export function hexValue(code: number): number {
  return code < 256 ? HEX[code] : -1;
}

/**
 * Split a raw origin-form target into normalised path and raw query.
 * The fragment (from the first `#`) is dropped from both.
 * @returns null when the path is invalid (bad or `%00` escape, climbing above `/`) → 400.
 */
export function splitTarget(target: string): SplitTarget | null {
  let q = -1;
  let end = target.length;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x3f /* ? */ && q < 0) q = i;
    else if (c === 0x23 /* # */) { end = i; break; }
  }
  const pathEnd = q >= 0 ? q : end;
  const path = normalizePath(target, 0, pathEnd);
  if (path === null) return null;
  return q >= 0
    ? { path, query: target.slice(q + 1, end), hasQuery: true }
    : { path, query: '', hasQuery: false };
}

/**
 * Decode `%HH` in `s[start, end)` and normalise: collapse slashes, resolve `.`
 * and `..` segments. A decoded `/` or `.` takes part in normalisation, as in Unit.
 * The input is expected to start with `/` (an empty input stays empty).
 * @returns the normalised path, or null for an invalid escape, `%00`, or `..` above the root.
 */
export function normalizePath(s: string, start = 0, end = s.length): string | null {
  // Fast path: nothing to decode and nothing to normalise.
  let simple = true;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 || (c === 0x2f && (i + 1 === end || s.charCodeAt(i + 1) === 0x2f || s.charCodeAt(i + 1) === 0x2e))) {
      simple = false; break;
    }
  }
  if (simple) return start === 0 && end === s.length ? s : s.slice(start, end);

  let d = '';
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      if (i + 2 >= end) return null;
      const h = hexValue(s.charCodeAt(i + 1)), l = hexValue(s.charCodeAt(i + 2));
      if (h < 0 || l < 0) return null;
      const b = (h << 4) | l;
      if (b === 0) return null;
      d += String.fromCharCode(b);
      i += 2;
    } else {
      d += s[i];
    }
  }
  return normalizeDecoded(d);
}

/** Resolve slashes and dot segments in an already decoded path; null when `..` climbs above the root. */
export function normalizeDecoded(d: string): string | null {
  let out = '';
  const n = d.length;
  let i = 0;
  while (i < n) {
    const c = d.charCodeAt(i);
    if (c === 0x2f) {
      if (out.length === 0 || out.charCodeAt(out.length - 1) !== 0x2f) out += '/';
      i++;
      continue;
    }
    if (c === 0x2e && out.length > 0 && out.charCodeAt(out.length - 1) === 0x2f) {
      const c1 = i + 1 < n ? d.charCodeAt(i + 1) : -1;
      if (c1 === -1 || c1 === 0x2f) { i += 1; continue; }          // "/." segment
      if (c1 === 0x2e) {
        const c2 = i + 2 < n ? d.charCodeAt(i + 2) : -1;
        if (c2 === -1 || c2 === 0x2f) {                            // "/.." segment
          if (out.length === 1) return null;
          const prev = out.lastIndexOf('/', out.length - 2);
          out = out.slice(0, prev + 1);
          i += 2;
          continue;
        }
      }
    }
    // Copy a run of ordinary chars up to the next slash.
    let j = i + 1;
    while (j < n && d.charCodeAt(j) !== 0x2f) j++;
    out += d.slice(i, j);
    i = j;
  }
  return out;
}

// The set of bytes Unit percent-escapes in a URI it writes out.
const ESCAPE = new Uint8Array(256);
for (let b = 0; b <= 0x20; b++) ESCAPE[b] = 1;
for (let b = 0x7f; b <= 0xff; b++) ESCAPE[b] = 1;
for (const ch of '"#%<>?\\^`{|}') ESCAPE[ch.charCodeAt(0)] = 1;

const UPPER_HEX = '0123456789ABCDEF';

function pct(b: number): string {
  return '%' + UPPER_HEX[b >> 4] + UPPER_HEX[b & 15];
}

/**
 * Unit's encoding of a `Location` value (§4.3): sent unchanged when already
 * properly encoded, else every byte of the escape set becomes `%XX`, except the
 * first `?` (when before any `#`) and the first `#`, which stay literal.
 * Input and output are byte strings.
 */
export function encodeLocation(s: string): string {
  let q = false, h = false, clean = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    if (!ESCAPE[c]) continue;
    if (c === 0x25 && hexValue(s.charCodeAt(i + 1)) >= 0 && hexValue(s.charCodeAt(i + 2)) >= 0) { i += 2; continue; }
    if (c === 0x3f && !q && !h) { q = true; continue; }
    if (c === 0x23 && !h) { h = true; continue; }
    clean = false;
    break;
  }
  if (clean) return s;
  let out = '';
  q = false; h = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    if (!ESCAPE[c]) { out += s[i]; continue; }
    if (c === 0x3f && !q && !h) { q = true; out += '?'; continue; }
    if (c === 0x23 && !h) { h = true; out += '#'; continue; }
    out += pct(c);
  }
  return out;
}

/** Escape every byte of Unit's escape set, `?` and `#` included (directory redirects, §8.1). */
export function escapeUri(s: string): string {
  let i = 0;
  while (i < s.length && !ESCAPE[s.charCodeAt(i) & 0xff]) i++;
  if (i === s.length) return s;
  let out = s.slice(0, i);
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    out += ESCAPE[c] ? pct(c) : s[i];
  }
  return out;
}

/**
 * Decode `%HH` (invalid sequences stay literal) and optionally `+` → space.
 * Used for query arguments (§3.4) and for pattern text in uri/query/arguments.
 */
export function decodeComponent(s: string, plus: boolean): string {
  if (s.indexOf('%') < 0 && (!plus || s.indexOf('+') < 0)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const h = hexValue(s.charCodeAt(i + 1)), l = hexValue(s.charCodeAt(i + 2));
      if (h >= 0 && l >= 0 && i + 2 < s.length) { out += String.fromCharCode((h << 4) | l); i += 2; continue; }
    } else if (c === 0x2b && plus) { out += ' '; continue; }
    out += s[i];
  }
  return out;
}

/** A JS (UTF-16) string from the configuration as a byte string (UTF-8 bytes, one char each). */
export function toByteString(s: string): string {
  return /^[\x00-\x7f]*$/.test(s) ? s : Buffer.from(s, 'utf8').toString('latin1');
}
