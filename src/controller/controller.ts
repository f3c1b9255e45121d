/**
 * The control API (spec/control-api.md §2–§4, §7, §10): `/config`
 * GET/PUT/POST/DELETE at any path, `/status`, `/js_modules`,
 * `/control/applications/NAME/restart` and `GET /`.
 *
 * Every change builds a candidate tree, validates it whole, has the router
 * apply it, has main persist it, and only then commits and answers: an invalid
 * or unappliable change leaves the running configuration untouched. Changes,
 * restarts and status reads go through one FIFO queue (§7.1); `GET /config`
 * reads the committed tree at once.
 */
import http from 'node:http';
import type { Channel } from '../ipc/channel.ts';
import type { Logger } from '../runtime/log.ts';
import { SERVER_NAME } from '../runtime/version.ts';
import { parseJson, serializeJson } from '../config/json.ts';
import { deleteAt, getAt, normalizeControlTarget, postAt, putAt, splitConfigPath } from '../config/tree.ts';
import { validateConfig } from '../config/validate.ts';
import type { ModuleInfo } from '../apps/discovery.ts';
import { printJson } from './json-print.ts';
import { ERR, type ControlError } from './errors.ts';
import { JS_MODULES } from './js-modules.ts';
import { CERTIFICATES, usedCertificates, type CertificateInfo } from './certificates.ts';
import { FileStore } from './store.ts';

/** The configuration of a fresh state (§6.1). */
export const DEFAULT_CONFIG = (): Record<string, unknown> => ({ listeners: {}, routes: [], applications: {} });

/** Largest control request body accepted, in bytes. */
const MAX_BODY = 64 * 1024 * 1024;

interface Reply { status: number; body: unknown }

export class Controller {
  readonly #main: Channel;
  readonly #log: Logger;
  readonly #statedir: string;
  readonly #modules: ModuleInfo[];
  readonly #js: FileStore<string>;
  readonly #certs: FileStore<CertificateInfo>;
  #config: unknown = DEFAULT_CONFIG();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(main: Channel, log: Logger, settings: { statedir: string; modules: ModuleInfo[] }) {
    this.#main = main;
    this.#log = log;
    this.#statedir = settings.statedir;
    this.#modules = settings.modules;
    this.#js = new FileStore(JS_MODULES, settings.statedir, log);
    this.#certs = new FileStore(CERTIFICATES, settings.statedir, log);
  }

  /** The committed configuration tree. */
  get config(): unknown { return this.#config; }

  #validate(tree: unknown): string | null {
    return validateConfig(tree, { modules: this.#modules, certificates: this.#certs.names(), jsModules: this.#js.names() });
  }

  /** Have the router apply `tree`, with the JS modules and certificate bundles it may use (router process `apply`). */
  #apply(tree: unknown): Promise<unknown> {
    return this.#main.request('apply', { config: tree, jsModules: this.#js.texts(), certificates: this.#certs.texts(usedCertificates(tree)) });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Startup restore (§7.5): the stored configuration if it parses, validates and
   * applies; otherwise the default tree, with an alert in the log.
   */
  async restore(): Promise<void> {
    await this.#serial(async () => {
      this.#js.load();
      this.#certs.load();
      const { data: text } = await this.#main.request<string | null>('stored-config');
      let tree: unknown = DEFAULT_CONFIG();
      if (text !== null) {
        const parsed = parseJson(Buffer.from(text, 'latin1'));
        if (!parsed.ok) {
          this.#log.alert(`the previous configuration is invalid: ${parsed.detail}`);
        } else {
          const detail = this.#validate(parsed.value);
          if (detail) this.#log.alert(`the previous configuration is invalid: ${detail}`);
          else tree = parsed.value;
        }
      }
      try {
        await this.#apply(tree);
      } catch (e) {
        this.#log.alert(`failed to apply previous configuration: ${(e as Error).message}`);
        tree = DEFAULT_CONFIG();
        await this.#apply(tree).catch((e2: Error) => this.#log.alert(`failed to apply the default configuration: ${e2.message}`));
      }
      this.#config = tree;
    });
  }

  /** A restarted router gets the committed configuration again. */
  reapply(): void {
    void this.#serial(async () => {
      try {
        await this.#apply(this.#config);
      } catch (e) {
        this.#log.alert(`failed to apply the configuration to the restarted router: ${(e as Error).message}`);
      }
    });
  }

  /** Handle one control API request (one request per connection; always answered then closed). */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = normalizeControlTarget(req.url ?? '');
    if (target === null) { req.socket.destroy(); return; }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { req.socket.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => {
      this.#dispatch(req.method ?? '', target, Buffer.concat(chunks))
        .catch((e: Error) => {
          this.#log.alert(`control request failed: ${e.stack ?? e.message}`);
          return err(ERR.internal);
        })
        .then((r) => send(res, r));
    });
  }

  async #dispatch(method: string, target: string, body: Buffer): Promise<Reply> {
    const under = (prefix: string): string | null =>
      target === prefix ? '' : target.startsWith(prefix + '/') ? target.slice(prefix.length + 1) : null;
    let rest: string | null;
    if ((rest = under('/config')) !== null) return this.#config_(method, rest, body);
    if ((rest = under('/status')) !== null) {
      if (method !== 'GET') return err(ERR.invalidMethod);
      return this.#serial(() => this.#status(rest!));
    }
    if ((rest = under('/js_modules')) !== null) return this.#js.handle(method, rest, body, this.#config);
    if ((rest = under('/certificates')) !== null) return this.#certs.handle(method, rest, body, this.#config);
    if (target.startsWith('/control/')) return this.#control(method, target.slice('/control/'.length));
    if (target === '/' || target === '') {
      if (method !== 'GET') return err(ERR.invalidMethod);
      return this.#serial(async () => {
        const status = await this.#statusTree();
        return { status: 200, body: { certificates: this.#certs.shown(), js_modules: this.#js.shown(), config: this.#config, status } };
      });
    }
    return err(ERR.noValue);
  }

  async #config_(method: string, rest: string, body: Buffer): Promise<Reply> {
    if (method === 'GET') {
      const tokens = splitConfigPath(rest);
      if (tokens === null) return err(ERR.noValue);
      const r = getAt(this.#config, tokens);
      return r.ok ? { status: 200, body: r.value } : err(ERR.noValue);
    }
    if (method !== 'PUT' && method !== 'POST' && method !== 'DELETE') return err(ERR.methodNotAllowed);
    return this.#serial(async () => {
      let value: unknown;
      if (method !== 'DELETE') {
        const parsed = parseJson(body);
        if (!parsed.ok) {
          return { status: 400, body: { error: 'Invalid JSON.', detail: parsed.detail, location: parsed.location } };
        }
        value = parsed.value;
      }
      const tokens = splitConfigPath(rest);
      if (tokens === null) return err(ERR.noValue);
      const op = method === 'PUT' ? putAt(this.#config, tokens, value)
        : method === 'POST' ? postAt(this.#config, tokens, value)
          : deleteAt(this.#config, tokens);
      if (!op.ok) return err(op.status === 405 ? ERR.methodNotAllowed : ERR.noValue);
      const detail = this.#validate(op.tree);
      if (detail) return { status: 400, body: { error: 'Invalid configuration.', detail } };
      try {
        await this.#apply(op.tree);
      } catch (e) {
        // Unit answers the title alone; the detail (which listener or application
        // failed, and why) is Junction's addition, harmless to Unit's clients.
        const why = (e as Error).message;
        this.#log.alert(`failed to apply new conf: ${why}`);
        return { status: ERR.applyFailed.status, body: { error: ERR.applyFailed.error, detail: why } };
      }
      this.#config = op.tree;
      try {
        await this.#main.request('persist', { json: serializeJson(op.tree) });
      } catch (e) {
        this.#log.alert(`failed to store the configuration: ${(e as Error).message}`);
      }
      return { status: 200, body: { success: 'Reconfiguration done.' } };
    });
  }

  async #statusTree(): Promise<Record<string, unknown>> {
    const { data } = await this.#main.request<{ connections: unknown; requests: unknown; applications: unknown }>('status');
    return { modules: modulesStatus(this.#modules), connections: data.connections, requests: data.requests, applications: data.applications };
  }

  async #status(rest: string): Promise<Reply> {
    let tree: Record<string, unknown>;
    try {
      tree = await this.#statusTree();
    } catch {
      return err(ERR.statusFailed);
    }
    const tokens = splitConfigPath(rest);
    if (tokens === null) return err(ERR.invalidPath);
    const r = getAt(tree, tokens);
    return r.ok ? { status: 200, body: r.value } : err(ERR.invalidPath);
  }

  async #control(method: string, rest: string): Promise<Reply> {
    if (method !== 'GET') return err(ERR.methodNotAllowed);
    const m = /^applications\/(.+)\/restart$/.exec(rest);
    if (!m) return err(ERR.noValue);
    const name = m[1];
    return this.#serial(async () => {
      const apps = (this.#config as { applications?: Record<string, unknown> }).applications;
      if (!apps || typeof apps !== 'object' || !Object.hasOwn(apps, name)) return err(ERR.noValue);
      try {
        await this.#main.request('restart', { name });
      } catch (e) {
        this.#log.alert(`failed to restart application "${name}": ${(e as Error).message}`);
        return err(ERR.restartFailed);
      }
      return { status: 200, body: { success: 'Ok' } };
    });
  }
}

/** `/status` `modules`: language → {version, lib}, or an array (newest first) when several. */
export function modulesStatus(modules: ModuleInfo[]): Record<string, unknown> {
  const out: Record<string, Array<{ version: string; lib: string }>> = {};
  for (const m of modules) (out[m.type] ??= []).push({ version: m.version, lib: m.lib });
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.length === 1 ? v[0] : v]));
}

function err(e: ControlError): Reply {
  return { status: e.status, body: { error: e.error } };
}

const REASONS: Record<number, string> = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

function send(res: http.ServerResponse, r: Reply): void {
  const body = Buffer.from(printJson(r.body), 'utf8');
  res.sendDate = false;
  res.statusCode = r.status;
  res.statusMessage = REASONS[r.status] ?? '';
  res.setHeader('Server', SERVER_NAME);
  res.setHeader('Date', new Date().toUTCString());
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Connection', 'close');
  res.end(body);
}
