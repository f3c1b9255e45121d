/**
 * Typed request/response messaging over a Node IPC channel (the `'ipc'` stdio
 * of a child process, or `process` inside the child). Descriptors travel with
 * a message as Node handles (net.Server, net.Socket or a raw TCP/Pipe handle;
 * SCM_RIGHTS underneath).
 *
 * Wire shape: `{ j: 1, id?, re?, type, data?, error? }`. A request carries `id`;
 * its answer carries `re` = that id and either `data` or `error` (a message).
 */
import type { ChildProcess } from 'node:child_process';

type Endpoint = ChildProcess | NodeJS.Process;

interface Envelope {
  j: 1;
  id?: number;
  re?: number;
  type: string;
  data?: unknown;
  error?: string;
}

/** What a request handler returns: plain data, or data with a handle to pass along. */
export interface Reply { data?: unknown; handle?: unknown }
export type Handler = (data: any, handle?: unknown) => unknown | Promise<unknown>;

/** Marks a handler result that carries a descriptor. */
export function withHandle(data: unknown, handle: unknown): Reply & { [REPLY]: true } {
  return { data, handle, [REPLY]: true };
}
const REPLY = Symbol('reply');

export class Channel {
  readonly #ep: Endpoint;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (r: { data: any; handle?: unknown }) => void; reject: (e: Error) => void }>();
  readonly #handlers = new Map<string, Handler>();

  constructor(ep: Endpoint) {
    this.#ep = ep;
    ep.on('message', (msg: unknown, handle?: unknown) => this.#receive(msg as Envelope, handle));
    ep.on('disconnect', () => this.#failAll(new Error('channel closed')));
    if ('pid' in ep && typeof (ep as ChildProcess).on === 'function' && ep !== process) {
      (ep as ChildProcess).on('exit', () => this.#failAll(new Error('process exited')));
    }
  }

  /** Register the handler for requests and notifications of `type`. */
  handle(type: string, fn: Handler): this {
    this.#handlers.set(type, fn);
    return this;
  }

  /** Send a request and wait for its answer. Rejects with the peer's error message. */
  request<T = any>(type: string, data?: unknown, handle?: unknown): Promise<{ data: T; handle?: any }> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (!this.#send({ j: 1, id, type, data }, handle)) {
        this.#pending.delete(id);
        reject(new Error('channel closed'));
      }
    });
  }

  /** Send a message that expects no answer. Returns false if the channel is closed. */
  notify(type: string, data?: unknown, handle?: unknown): boolean {
    return this.#send({ j: 1, type, data }, handle);
  }

  get connected(): boolean {
    return Boolean((this.#ep as { connected?: boolean }).connected);
  }

  #send(msg: Envelope, handle?: unknown): boolean {
    const ep = this.#ep as { connected?: boolean; send?: (m: unknown, h?: unknown, o?: unknown, cb?: (e: Error | null) => void) => boolean };
    if (!ep.connected || !ep.send) return false;
    try {
      ep.send(msg, handle as never, undefined, () => {});
      return true;
    } catch {
      return false;
    }
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  async #receive(msg: Envelope, handle?: unknown): Promise<void> {
    if (!msg || msg.j !== 1) return;
    if (msg.re !== undefined) {
      const p = this.#pending.get(msg.re);
      if (!p) return;
      this.#pending.delete(msg.re);
      if (msg.error !== undefined) p.reject(new Error(msg.error));
      else p.resolve({ data: msg.data, handle });
      return;
    }
    const fn = this.#handlers.get(msg.type);
    if (msg.id === undefined) {
      if (fn) {
        try { await fn(msg.data, handle); } catch { /* notifications have no answer */ }
      }
      return;
    }
    if (!fn) {
      this.#send({ j: 1, re: msg.id, type: msg.type, error: `no handler for "${msg.type}"` });
      return;
    }
    try {
      const out = await fn(msg.data, handle);
      if (out && typeof out === 'object' && REPLY in out) {
        const r = out as Reply;
        this.#send({ j: 1, re: msg.id, type: msg.type, data: r.data }, r.handle);
      } else {
        this.#send({ j: 1, re: msg.id, type: msg.type, data: out });
      }
    } catch (e) {
      this.#send({ j: 1, re: msg.id, type: msg.type, error: (e as Error)?.message ?? String(e) });
    }
  }
}
