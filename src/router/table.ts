/**
 * The routing table: a whole configuration compiled into immutable objects
 * (spec/router.md §1–§8). Built by `compileTable` when a configuration is
 * applied; connections keep the table they were accepted under.
 */
import type { AppManagerLike, AppTransaction } from '../apps/types.ts';
import { parseListenerName } from '../config/address.ts';
import type { Handler, Action } from './action.ts';
import { Route } from './routes.ts';
import { compileMatch } from './match.ts';
import { compilePass, type PassResolver } from './actions/pass.ts';
import { compileReturn } from './actions/return.ts';
import { compileShare } from './actions/share.ts';
import { compileProxy } from './actions/proxy.ts';
import { compileUpstream } from './upstream.ts';
import { compileResponseHeaders } from './response-headers.ts';
import { compileTemplate } from './variables.ts';
import { compileSettings, type HttpSettings } from './settings.ts';
import { compileForwarded, type ForwardedRule } from './forwarded.ts';
import type { AccessLog } from './access-log.ts';
import { compileTls, type TlsConfig, type TlsSetup } from './tls.ts';

export type { Action } from './action.ts';

/** One listener's compiled configuration. */
export interface ListenerConfig {
  /** The listener name as configured (`*:8080`, `unix:/path`). */
  name: string;
  table: RouterTable;
  pass: Handler;
  /** `forwarded` then legacy `client_ip`, in the order they apply (§1.3). */
  forwarded: ForwardedRule[];
  /** Path of a Unix listener, null for IP listeners. */
  unixPath: string | null;
  /** `backlog`, -1 = OS default. */
  backlog: number;
  /** `tls` compiled (contexts, SNI, sessions), null for a plain listener. */
  tls: TlsSetup | null;
}

export interface RouterTable {
  settings: HttpSettings;
  listeners: Map<string, ListenerConfig>;
  /** Routes by decoded name; the anonymous (array) route is under ''. */
  routes: Map<string, Route>;
  /** True when `config.routes` is an array. */
  anonymousRoutes: boolean;
  upstreams: Map<string, Handler>;
  accessLog: AccessLog | null;
  /** For templated `pass` to applications, resolved at request time. */
  apps: AppManagerLike;
}

type Obj = Record<string, unknown>;

/** What `compileTable` needs besides the configuration. */
export interface CompileOptions {
  tx: AppTransaction;
  apps: AppManagerLike;
  tmpdir: string;
  accessLog: AccessLog | null;
  /** Uploaded certificate bundles named by listeners' `tls`: name → PEM text. */
  certificates?: Record<string, string>;
  /**
   * Compiles a listener's `tls` object (the router's, which keeps the setups
   * of unchanged listeners); compileTls with `certificates` when absent.
   */
  tls?: (conf: TlsConfig) => TlsSetup;
}

/**
 * Compile an `action` object (§4).
 * @throws Error for a missing action or anything invalid.
 */
export function compileAction(a: Obj | undefined, via: PassResolver, settings: HttpSettings): Action {
  if (a === undefined || a === null || typeof a !== 'object') throw new Error('A route step has no "action".');
  let handler: Handler;
  if (typeof a.pass === 'string') handler = compilePass(a.pass, via);
  else if (typeof a.return === 'number') handler = compileReturn(a);
  else if (a.share !== undefined) handler = compileShare(a, (f) => compileAction(f as Obj, via, settings));
  else if (typeof a.proxy === 'string') handler = compileProxy(a.proxy);
  else throw new Error('The "action" object must have either "pass", "return", "share", or "proxy" option set.');
  return {
    handler,
    rewrite: typeof a.rewrite === 'string' ? compileTemplate(a.rewrite, 'rewrite') : null,
    responseHeaders: a.response_headers ? compileResponseHeaders(a.response_headers as Record<string, string | null>) : null,
  };
}

/**
 * A listener's `tls` (§10).
 * @throws Error naming the listener when a bundle is missing or does not load,
 *         or an option cannot be honoured (the apply fails with 500).
 */
function listenerTls(name: string, conf: TlsConfig, opts: CompileOptions): TlsSetup {
  try {
    return opts.tls ? opts.tls(conf) : compileTls(conf, opts.certificates ?? {});
  } catch (e) {
    throw new Error(`listener "${name}": TLS: ${(e as Error).message}`);
  }
}

/**
 * Compile a whole configuration.
 * @throws Error (message logged, apply fails with 500) for a listener without
 *         `pass` or whose `tls` cannot be set up, a step without `action`, or
 *         anything that does not compile.
 */
export function compileTable(config: Obj, opts: CompileOptions): RouterTable {
  const settings = compileSettings(config.settings, opts.tmpdir);
  const routesConf = config.routes;
  const anonymous = Array.isArray(routesConf);
  const routes = new Map<string, Route>();
  if (anonymous) routes.set('', new Route('routes'));
  else if (routesConf && typeof routesConf === 'object') {
    for (const name of Object.keys(routesConf)) routes.set(name, new Route(`routes/${name}`));
  }
  const upstreams = new Map<string, Handler>();
  const upstreamsConf = (config.upstreams ?? {}) as Obj;
  for (const name of Object.keys(upstreamsConf)) upstreams.set(name, compileUpstream(upstreamsConf[name] as Obj));

  const via: PassResolver = {
    route: (name) => (name === undefined ? (anonymous ? routes.get('') : undefined)
      : anonymous ? undefined : routes.get(name)),
    upstream: (name) => upstreams.get(name),
    app: (name, target) => opts.tx.target(name, target),
  };

  const steps = (list: unknown): Obj[] => (Array.isArray(list) ? list as Obj[] : []);
  for (const [name, route] of routes) {
    const list = anonymous ? routesConf : (routesConf as Obj)[name];
    route.steps = steps(list).map((s) => ({
      match: compileMatch(s.match as Obj | undefined),
      action: compileAction(s.action as Obj | undefined, via, settings),
    }));
  }

  const table: RouterTable = {
    settings,
    listeners: new Map(),
    routes,
    anonymousRoutes: anonymous,
    upstreams,
    accessLog: opts.accessLog,
    apps: opts.apps,
  };
  const listenersConf = (config.listeners ?? {}) as Obj;
  for (const name of Object.keys(listenersConf)) {
    const l = listenersConf[name] as Obj;
    const pass = typeof l.pass === 'string' ? l.pass
      : typeof l.application === 'string' ? `applications/${l.application}` : undefined;
    if (pass === undefined) throw new Error(`The listener "${name}" has no "pass".`);
    const addr = parseListenerName(name);
    if (!addr) throw new Error(`The listener address "${name}" is invalid.`);
    table.listeners.set(name, {
      name,
      table,
      pass: compilePass(pass, via),
      forwarded: compileForwarded(l),
      unixPath: addr.kind === 'unix' ? addr.path : null,
      backlog: typeof l.backlog === 'number' ? l.backlog : -1,
      tls: l.tls === undefined ? null : listenerTls(name, l.tls as TlsConfig, opts),
    });
  }
  return table;
}
