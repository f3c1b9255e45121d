/**
 * `response_headers` (spec/router.md §4.6): set, replace or remove response
 * fields of the final action, for statuses 200–399. All values are expanded
 * before any change, so `$response_header_*` sees the action's own response.
 * Entries named Server, Date or Content-Length are ignored (Unit would
 * duplicate the first two; validation rejects the third).
 */
import type { Request } from './request.ts';
import { compileTemplate, type Template } from './variables.ts';
import { toByteString } from './uri.ts';

interface Entry { name: string; lower: string; value: Template | null }

const IGNORED = new Set(['server', 'date', 'content-length']);

/** A compiled `response_headers` object. */
export class ResponseHeaders {
  private readonly entries: Entry[];
  private readonly scratch: Array<string | null>;
  /** Some value is a JS template (it may fail: the response then becomes a 500). */
  readonly hasJs: boolean;

  constructor(entries: Entry[]) {
    this.entries = entries;
    this.scratch = new Array(entries.length);
    this.hasJs = entries.some((e) => e.value !== null && e.value.source.startsWith('`'));
  }

  /** Edit `fields` ([name, value, …]) in place for request `r`. */
  apply(r: Request, fields: string[]): void {
    const e = this.entries;
    const values: Array<string | null> = e.length <= 8 ? this.scratch : new Array(e.length);
    for (let i = 0; i < e.length; i++) values[i] = e[i].value === null ? null : e[i].value!.expand(r);
    for (let i = 0; i < e.length; i++) {
      let at = -1;
      for (let j = 0; j < fields.length; j += 2) {
        if (fields[j].length === e[i].lower.length && fields[j].toLowerCase() === e[i].lower) { at = j; break; }
      }
      const v = values[i];
      if (v === null) {
        if (at >= 0) fields.splice(at, 2);
      } else if (at >= 0) {
        fields[at + 1] = v;
      } else {
        fields.push(e[i].name, v);
      }
    }
  }
}

/** Compile a `response_headers` object; null when it has no effective entries. */
export function compileResponseHeaders(value: Record<string, string | null>): ResponseHeaders | null {
  const entries: Entry[] = [];
  for (const name of Object.keys(value)) {
    const lower = name.toLowerCase();
    if (IGNORED.has(lower)) continue;
    const v = value[name];
    entries.push({ name: toByteString(name), lower, value: v === null ? null : compileTemplate(v, name) });
  }
  return entries.length ? new ResponseHeaders(entries) : null;
}
