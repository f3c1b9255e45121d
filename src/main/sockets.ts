/**
 * Listening sockets, created by main (the privileged process) and handed to
 * the router and controller as descriptors.
 *
 * A socket here is bound but not listening: the receiving process calls
 * `net.Server.listen(handle)`. Main keeps its copy until the listener goes away,
 * so a restarted router gets the very same socket back and connections that
 * arrive meanwhile wait in the kernel's backlog instead of being refused.
 * Source: Unit's main process binds listener sockets for the router
 * (spec/applications.md §1.4).
 */
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import util from 'node:util';
import { parseListenerName } from '../config/address.ts';

/** Opaque libuv TCP/Pipe handle, passable over IPC. */
export type RawHandle = { fd: number; close(cb?: () => void): void };

const createHandle = (net as unknown as {
  _createServerHandle(address: string | null, port: number, addressType: number, fd?: number, flags?: number): RawHandle | number;
})._createServerHandle;

const UV_TCP_IPV6ONLY = 1;

/** `98: Address already in use` for a negative libuv/errno code. */
export function errnoText(code: number): string {
  const name = util.getSystemErrorName(code);
  const num = (os.constants.errno as Record<string, number>)[name] ?? -code;
  const getMsg = (util as unknown as { getSystemErrorMessage?: (c: number) => string }).getSystemErrorMessage;
  const text = getMsg ? getMsg(code) : name;
  // libuv's texts are strerror's in lower case; Unit prints strerror's own.
  return `${num}: ${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

/**
 * Bind the socket of a Unit listener or control address (`*:80`, `1.2.3.4:80`,
 * `[::1]:80`, `unix:/path`, `unix:@name`). Unix paths become mode 0666, as Unit.
 * @throws Error `bind("ADDR") failed (98: Address already in use)` (Unit's wording), or
 *         `The listener address "X" is invalid.` for a malformed name.
 */
export function bindAddress(name: string, unixMode = 0o666): RawHandle {
  const a = parseListenerName(name);
  if (!a) throw new Error(`The listener address "${name}" is invalid.`);
  let h: RawHandle | number;
  if (a.kind === 'unix') {
    const p = a.abstract ? '\0' + a.path.replace(/^@/, '') : a.path;
    h = createHandle(p, -1, -1, undefined, 0);
    if (typeof h !== 'number' && !a.abstract) {
      try { fs.chmodSync(a.path, unixMode); } catch { /* the bind succeeded; mode is best effort */ }
    }
  } else {
    const host = a.wildcard ? (a.family === 6 ? '::' : '0.0.0.0') : a.host;
    h = createHandle(host, a.port, a.family, undefined, a.family === 6 ? UV_TCP_IPV6ONLY : 0);
    // libuv defers EADDRINUSE from bind() to listen(); the socket is then left
    // unbound, and a listen() in the router would silently pick a random port.
    if (typeof h !== 'number') {
      const out: { port?: number } = {};
      (h as unknown as { getsockname(o: object): number }).getsockname(out);
      if (out.port !== a.port) {
        h.close();
        h = -(os.constants.errno.EADDRINUSE);
      }
    }
  }
  if (typeof h === 'number') throw new Error(`bind("${name}") failed (${errnoText(h)})`);
  return h;
}

/** True when something accepts connections at the Unix socket `path`. */
export function unixSocketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
