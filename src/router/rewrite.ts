/**
 * `rewrite` (spec/router.md §4.5): the expansion replaces the request path and
 * is normalised like a request target; any `?query`/`#fragment` in it is
 * dropped (the original query stays). `$request_uri` is not changed. With
 * `settings.http.log_route` the new path is logged (§7.4).
 */
import type { Request } from './request.ts';
import type { Template } from './variables.ts';
import { normalizePath } from './uri.ts';

/** Apply `rewrite` to `r`; false when the result cannot be normalised (→ 500). */
export function applyRewrite(r: Request, rewrite: Template): boolean {
  const s = rewrite.expand(r);
  let end = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x3f || c === 0x23) { end = i; break; }
  }
  const path = normalizePath(s, 0, end);
  if (path === null) return false;
  r.path = path;
  r.rewritten = true;
  r.rewriteEscaped = s.lastIndexOf('%', end - 1) >= 0;
  if (r.table.settings.logRoute) r.conn.log.notice(`URI rewritten to "${path}"`);
  return true;
}
