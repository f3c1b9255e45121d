/**
 * `/js_modules` (spec/control-api.md §10): the JS module store.
 *
 * Modules are uploaded with `PUT /js_modules/NAME` (the body is the source,
 * not JSON), checked by compiling them (nothing runs), and kept in
 * `<statedir>/scripts/NAME` (0600, written atomically). The controller reads
 * and writes that directory itself; the router gets the sources with every
 * configuration it applies. Uploads and deletions are not queued behind
 * configuration changes; the "in use" check looks at the committed tree
 * (`settings.js_module`).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../runtime/log.ts';
import { checkJsModule } from '../config/js-module.ts';
import { getAt, splitConfigPath } from '../config/tree.ts';
import { writeAtomic } from '../main/state.ts';
import { ERR, type ControlError } from './errors.ts';

/** A control API answer: status and JSON body. */
export interface StoreReply { status: number; body: unknown }

const reply = (e: ControlError): StoreReply => ({ status: e.status, body: { error: e.error } });

/** Names listed by `settings.js_module` of a configuration tree. */
export function usedJsModules(config: unknown): string[] {
  const settings = (config as { settings?: { js_module?: unknown } } | null)?.settings;
  const v = settings?.js_module;
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** The uploaded modules, in memory and in `<statedir>/scripts/`. */
export class JsModuleStore {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #modules = new Map<string, string>();

  constructor(statedir: string, log: Logger) {
    this.#dir = path.join(statedir, 'scripts');
    this.#log = log;
  }

  /** Load every stored module; files that do not compile are skipped with a log line (§7.5). */
  load(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.#dir);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      let source: string;
      try {
        source = fs.readFileSync(path.join(this.#dir, name), 'utf8');
      } catch (e) {
        this.#log.alert(`failed to read the JS module "${name}": ${(e as Error).message}`);
        continue;
      }
      const detail = checkJsModule(name, source);
      if (detail !== null) {
        this.#log.alert(`the stored JS module "${name}" is invalid: ${detail}`);
        continue;
      }
      this.#modules.set(name, source);
    }
  }

  /** Module names, for validating `settings.js_module`. */
  names(): Set<string> {
    return new Set(this.#modules.keys());
  }

  /** name → source of every module, as the router gets them. */
  sources(): Record<string, string> {
    return Object.fromEntries(this.#modules);
  }

  /**
   * Serve one `/js_modules…` request.
   * @param rest the target after `/js_modules/` ('' or `NAME[/…]`), normalised
   * @param committed the committed configuration (for the "in use" check)
   */
  handle(method: string, rest: string, body: Buffer, committed: unknown): StoreReply {
    const slash = rest.indexOf('/');
    const name = slash < 0 ? rest : rest.slice(0, slash);
    const sub = slash < 0 ? '' : rest.slice(slash);
    if (method === 'GET') {
      if (name === '') return { status: 200, body: this.sources() };
      const source = this.#modules.get(name);
      if (source === undefined) return reply(ERR.jsModuleMissing);
      if (sub === '') return { status: 200, body: source };
      const tokens = splitConfigPath(sub);
      const r = tokens === null ? null : getAt(source, tokens);
      return r !== null && r.ok ? { status: 200, body: r.value } : reply(ERR.invalidPath);
    }
    if (name === '' || sub !== '') return reply(ERR.jsModuleName);
    if (method === 'PUT') return this.#put(name, body);
    if (method === 'DELETE') return this.#delete(name, committed);
    return reply(ERR.invalidMethod);
  }

  #put(name: string, body: Buffer): StoreReply {
    if (this.#modules.has(name)) return reply(ERR.jsModuleExists);
    const source = body.toString('utf8');
    const detail = checkJsModule(name, source);
    if (detail !== null) return { status: 400, body: { error: ERR.jsModuleInvalid.error, detail } };
    try {
      fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      writeAtomic(path.join(this.#dir, name), source);
    } catch (e) {
      this.#log.alert(`failed to store the JS module "${name}": ${(e as Error).message}`);
      return reply(ERR.jsModuleStore);
    }
    this.#modules.set(name, source);
    return { status: 200, body: { success: 'JS module uploaded.' } };
  }

  #delete(name: string, committed: unknown): StoreReply {
    if (usedJsModules(committed).includes(name)) return reply(ERR.jsModuleUsed);
    if (!this.#modules.has(name)) return reply(ERR.jsModuleMissing);
    try {
      fs.unlinkSync(path.join(this.#dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#log.alert(`failed to remove the JS module "${name}": ${(e as Error).message}`);
        return reply(ERR.internal);
      }
    }
    this.#modules.delete(name);
    return { status: 200, body: { success: 'JS module deleted.' } };
  }
}
