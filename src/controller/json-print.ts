/**
 * The control API's JSON output, formatted as Unit prints it
 * (spec/control-api.md §2.2): CRLF line breaks, one TAB per nesting level,
 * `": "` between name and value, `{}`/`[]` when empty, a blank line after an
 * object member whose value is a non-empty object or array when more members
 * follow; strings escape `"`, `\` and control characters (upper-case `\u00XX`),
 * other characters are written as they are and `/` is not escaped.
 */

const SHORT: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/** A JSON string literal with Unit's escaping. */
export function quote(s: string): string {
  // eslint-disable-next-line no-control-regex
  return '"' + s.replace(/["\\\u0000-\u001f]/g, (c) => SHORT[c] ?? '\\u' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')) + '"';
}

function isFilled(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  return v !== null && typeof v === 'object' && Object.keys(v).length > 0;
}

function print(v: unknown, indent: string): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  const inner = indent + '\t';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return '[\r\n' + v.map((e, i) => inner + print(e, inner) + (i < v.length - 1 ? ',' : '') + '\r\n').join('') + indent + ']';
  }
  const keys = Object.keys(v as object);
  if (keys.length === 0) return '{}';
  let out = '{\r\n';
  keys.forEach((k, i) => {
    const m = (v as Record<string, unknown>)[k];
    const more = i < keys.length - 1;
    out += inner + quote(k) + ': ' + print(m, inner) + (more ? ',' : '') + '\r\n';
    if (more && isFilled(m)) out += '\r\n';
  });
  return out + indent + '}';
}

/** The response body for a JSON value: pretty-printed, followed by CRLF. */
export function printJson(v: unknown): string {
  return print(v, '') + '\r\n';
}
