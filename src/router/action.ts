/**
 * The action interface and the action loop (spec/router.md §4.1).
 *
 * Every action kind (pass, return, share, proxy, and the targets a pass
 * resolves to: routes, applications, upstreams) compiles into a Handler.
 * `run(r)` either answers the request (now or later) and returns null, or
 * returns the next Handler to run. A handler that finishes asynchronously and
 * wants to continue (share → fallback) calls `dispatch` again itself.
 */
import type { Request } from './request.ts';
import type { Template } from './variables.ts';
import type { ResponseHeaders } from './response-headers.ts';
import { applyRewrite } from './rewrite.ts';
import { JsError } from './js.ts';

/** One compiled action kind. */
export interface Handler {
  /** Answer `r`, or return the next handler; throwing means 500. */
  run(r: Request): Handler | null;
}

/** A compiled `action` object: its handler plus the options every kind may carry. */
export interface Action {
  handler: Handler;
  rewrite: Template | null;
  responseHeaders: ResponseHeaders | null;
}

/** Unit stops a chain of passes after this many hops with a 500 (§3.1). */
export const MAX_HOPS = 255;

/**
 * Make `action` the current one (its rewrite runs now, its response_headers
 * apply to the response) and return its handler; a failed rewrite answers 500.
 */
export function enterAction(r: Request, action: Action): Handler | null {
  r.current = action;
  if (action.rewrite !== null && !applyRewrite(r, action.rewrite)) {
    r.res.sendError(500);
    return null;
  }
  return action.handler;
}

/** Run handlers starting at `h` until one answers. Errors become a 500 error page. */
export function dispatch(r: Request, h: Handler | null): void {
  try {
    while (h !== null) {
      if (++r.hops > MAX_HOPS) {
        r.res.sendError(500);
        return;
      }
      h = h.run(r);
    }
  } catch (e) {
    logFailure(r, e);
    r.res.sendError(500);
  }
}

/** Error-log line for a request that failed with `e` (500): Unit's `js exception: …` for templates. */
export function logFailure(r: Request, e: unknown): void {
  if (e instanceof JsError) r.conn.log.error(`js exception: ${e.message}`);
  else r.conn.log.error(`request failed: ${(e as Error).message}`);
}
