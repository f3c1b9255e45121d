/**
 * The control API's file stores: `/certificates` (spec/control-api.md §9) and
 * `/js_modules` (§10). Both work the same way, only their checks and words
 * differ, so one class serves both with a `StoreKind` describing each.
 *
 * Items are uploaded with `PUT /PREFIX/NAME` (the body is the item itself, not
 * JSON), checked, and kept in `<statedir>/<dir>/NAME` (0600, written
 * atomically). Uploads and deletions are not queued behind configuration
 * changes; the "in use" check looks at the committed tree.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../runtime/log.ts';
import { getAt, splitConfigPath } from '../config/tree.ts';
import { writeAtomic } from '../main/state.ts';
import { ERR, type ControlError } from './errors.ts';

/** A control API answer: status and JSON body. */
export interface StoreReply { status: number; body: unknown }

/** What makes one store differ from the other. */
export interface StoreKind<T> {
  /** Subdirectory of the state directory. */
  dir: string;
  /** For log lines: `certificate`, `JS module`. */
  noun: string;
  /** Check an upload or a stored file: the parsed item, or the `detail` of the rejection (null: no detail). */
  parse(name: string, data: Buffer): { ok: true; item: T } | { ok: false; detail: string | null };
  /** The value GET shows for one item. */
  show(item: T): unknown;
  /** Names the committed configuration refers to. */
  used(config: unknown): string[];
  errors: { name: ControlError; exists: ControlError; invalid: ControlError; used: ControlError; missing: ControlError; store: ControlError };
  uploaded: string;
  deleted: string;
}

const reply = (e: ControlError): StoreReply => ({ status: e.status, body: { error: e.error } });

export class FileStore<T> {
  readonly #kind: StoreKind<T>;
  readonly #dir: string;
  readonly #log: Logger;
  readonly #items = new Map<string, { item: T; data: Buffer }>();

  constructor(kind: StoreKind<T>, statedir: string, log: Logger) {
    this.#kind = kind;
    this.#dir = path.join(statedir, kind.dir);
    this.#log = log;
  }

  /** Load every stored item; files that fail their check are skipped with a log line (§7.5). */
  load(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.#dir);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      if (name.endsWith('.tmp')) continue;
      let data: Buffer;
      try {
        data = fs.readFileSync(path.join(this.#dir, name));
      } catch (e) {
        this.#log.alert(`failed to read the ${this.#kind.noun} "${name}": ${(e as Error).message}`);
        continue;
      }
      const r = this.#kind.parse(name, data);
      if (!r.ok) {
        this.#log.alert(`the stored ${this.#kind.noun} "${name}" is invalid${r.detail ? `: ${r.detail}` : ''}`);
        continue;
      }
      this.#items.set(name, { item: r.item, data });
    }
  }

  /** Item names, for validating references. */
  names(): Set<string> {
    return new Set(this.#items.keys());
  }

  /** name → the stored bytes as text, for the router (PEM bundles, module sources). */
  texts(only?: Iterable<string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of only ?? this.#items.keys()) {
      const e = this.#items.get(name);
      if (e) out[name] = e.data.toString('utf8');
    }
    return out;
  }

  /** name → what GET shows, for `GET /PREFIX` and the root object. */
  shown(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, e] of this.#items) out[name] = this.#kind.show(e.item);
    return out;
  }

  /**
   * Serve one request under the store's prefix.
   * @param rest the target after `/PREFIX/` ('' or `NAME[/…]`), normalised
   * @param committed the committed configuration (for the "in use" check)
   */
  handle(method: string, rest: string, body: Buffer, committed: unknown): StoreReply {
    const k = this.#kind;
    const slash = rest.indexOf('/');
    const name = slash < 0 ? rest : rest.slice(0, slash);
    const sub = slash < 0 ? '' : rest.slice(slash);
    if (method === 'GET') {
      if (name === '') return { status: 200, body: this.shown() };
      const e = this.#items.get(name);
      if (e === undefined) return reply(k.errors.missing);
      const tokens = splitConfigPath(sub);
      const r = tokens === null ? null : getAt(k.show(e.item), tokens);
      return r !== null && r.ok ? { status: 200, body: r.value } : reply(ERR.invalidPath);
    }
    if (name === '' || sub !== '') return reply(k.errors.name);
    if (method === 'PUT') return this.#put(name, body);
    if (method === 'DELETE') return this.#delete(name, committed);
    return reply(ERR.invalidMethod);
  }

  #put(name: string, body: Buffer): StoreReply {
    const k = this.#kind;
    if (this.#items.has(name)) return reply(k.errors.exists);
    const r = k.parse(name, body);
    if (!r.ok) {
      return { status: k.errors.invalid.status, body: r.detail === null ? { error: k.errors.invalid.error } : { error: k.errors.invalid.error, detail: r.detail } };
    }
    try {
      fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      writeAtomic(path.join(this.#dir, name), body);
    } catch (e) {
      this.#log.alert(`failed to store the ${k.noun} "${name}": ${(e as Error).message}`);
      return reply(k.errors.store);
    }
    this.#items.set(name, { item: r.item, data: Buffer.from(body) });
    return { status: 200, body: { success: k.uploaded } };
  }

  #delete(name: string, committed: unknown): StoreReply {
    const k = this.#kind;
    if (!this.#items.has(name)) return reply(k.errors.missing);
    if (k.used(committed).includes(name)) return reply(k.errors.used);
    try {
      fs.unlinkSync(path.join(this.#dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#log.alert(`failed to remove the ${k.noun} "${name}": ${(e as Error).message}`);
        return reply(ERR.internal);
      }
    }
    this.#items.delete(name);
    return { status: 200, body: { success: k.deleted } };
  }
}
