/**
 * `pass` (spec/router.md §1.2, §4.2): to a route, an application (target) or
 * an upstream. A constant pass is resolved when the configuration is compiled;
 * a templated one per request (unknown target → 404, expansion error → 500).
 */
import type { Request } from '../request.ts';
import type { Handler } from '../action.ts';
import type { AppTarget } from '../../apps/types.ts';
import { isTemplate } from '../../config/template.ts';
import { compileTemplate, type Template } from '../variables.ts';
import { decodeComponent } from '../uri.ts';
import { upgradeApp } from '../websocket.ts';

/** Hands the request to an application process pool. */
export class AppHandler implements Handler {
  readonly target: AppTarget;
  constructor(target: AppTarget) { this.target = target; }

  run(r: Request): null {
    serveApp(r, this.target);
    return null;
  }
}

/**
 * Give `r` to an application (AppRequest is the Request itself); a WebSocket
 * handshake goes to the application's upgrade support when it has one.
 */
export function serveApp(r: Request, target: AppTarget): void {
  if (r.upgrade !== null && upgradeApp(r, target)) return;
  r.res.compressible = true;
  target.serve(r);
}

/**
 * Split a pass value into 1–3 non-empty, individually percent-decoded segments.
 * @returns null when the value is malformed.
 */
export function splitPass(value: string): string[] | null {
  const seg = value.split('/');
  if (seg.length > 3) return null;
  for (let i = 0; i < seg.length; i++) {
    if (seg[i] === '') return null;
    seg[i] = decodeComponent(seg[i], false);
  }
  return seg;
}

/** What a compile context gives pass resolution. */
export interface PassResolver {
  /** `routes` (anonymous) or a named route, by decoded name; undefined when absent. */
  route(name: string | undefined): Handler | undefined;
  upstream(name: string): Handler | undefined;
  app(name: string, target: string | undefined): AppTarget | undefined;
}

/** Resolve split segments to a handler; undefined when nothing matches. */
export function resolvePass(seg: string[], via: PassResolver): Handler | undefined {
  switch (seg[0]) {
    case 'routes':
      return seg.length <= 2 ? via.route(seg[1]) : undefined;
    case 'upstreams':
      return seg.length === 2 ? via.upstream(seg[1]) : undefined;
    case 'applications': {
      if (seg.length < 2) return undefined;
      const t = via.app(seg[1], seg[2]);
      return t === undefined ? undefined : new AppHandler(t);
    }
    default:
      return undefined;
  }
}

/** A templated pass, resolved against the request's table at request time. */
export class DynamicPassHandler implements Handler {
  readonly template: Template;
  constructor(template: Template) { this.template = template; }

  run(r: Request): Handler | null {
    const seg = splitPass(this.template.expand(r));
    if (seg === null) {
      r.res.sendError(404);
      return null;
    }
    const t = r.table;
    switch (seg[0]) {
      case 'routes': {
        const h = seg.length <= 2 ? t.routes.get(seg.length === 1 ? '' : seg[1]) : undefined;
        if (h !== undefined && (seg.length === 1) === t.anonymousRoutes) return h;
        break;
      }
      case 'upstreams': {
        const h = seg.length === 2 ? t.upstreams.get(seg[1]) : undefined;
        if (h !== undefined) return h;
        break;
      }
      case 'applications': {
        const app = seg.length >= 2 ? t.apps.target(seg[1], seg[2]) : undefined;
        if (app !== undefined) {
          serveApp(r, app);
          return null;
        }
        break;
      }
    }
    r.res.sendError(404);
    return null;
  }
}

/**
 * Compile a `pass` value.
 * @throws Error `Request "pass" points to invalid location "V".` when a constant pass resolves to nothing,
 *         `Request "pass" value "V" is invalid.` when malformed.
 */
export function compilePass(value: string, via: PassResolver): Handler {
  if (isTemplate(value)) return new DynamicPassHandler(compileTemplate(value, 'pass'));
  const seg = splitPass(value);
  if (seg === null) throw new Error(`Request "pass" value "${value}" is invalid.`);
  const h = resolvePass(seg, via);
  if (h === undefined) throw new Error(`Request "pass" points to invalid location "${value}".`);
  return h;
}
