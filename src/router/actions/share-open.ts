/**
 * Opening a share path (spec/router.md §8.1 c, §8.3). Without restrictions the
 * file is simply opened (non-blocking, so a FIFO never hangs). With `chroot`,
 * `follow_symlinks: false` or `traverse_mounts: false`, the path is walked one
 * component at a time with lstat, the way openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV) would resolve it: `..` and absolute
 * symlinks stay inside the chroot, refused symlinks and mount crossings give
 * 403, and the final open uses O_NOFOLLOW.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
const MAX_LINKS = 40;

export interface OpenOptions {
  /** Expanded chroot directory (byte string), or null. */
  chroot: string | null;
  followSymlinks: boolean;
  traverseMounts: boolean;
}

/** status 0 = opened (handle and stat set); 403/404; 500 with `error` for other failures. */
export interface Opened {
  status: number;
  handle?: FileHandle;
  stat?: fs.Stats;
  error?: string;
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Map an open/stat error to Unit's status (§8.1 c). */
export function errorStatus(code: string | undefined): number {
  switch (code) {
    case 'ENOENT': case 'ENOTDIR': case 'ENAMETOOLONG': case 'ENXIO':
      return 404;
    case 'EACCES': case 'ELOOP': case 'EXDEV': case 'EPERM':
      return 403;
    default:
      return 500;
  }
}

async function openFinal(path: string, flags: number): Promise<Opened> {
  let fh: FileHandle | undefined;
  try {
    fh = await fs.promises.open(b(path), flags);
    const stat = await fh.stat();
    return { status: 0, handle: fh, stat };
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    const err = e as NodeJS.ErrnoException;
    return { status: errorStatus(err.code), error: `${err.errno ?? ''}: ${err.message}` };
  }
}

/** Collapse duplicate slashes and drop a trailing one (`/a//b/` → `/a/b`). */
function squash(p: string): string {
  const s = p.replace(/\/+/g, '/');
  return s.length > 1 && s.endsWith('/') ? s.slice(0, -1) : s;
}

/** Open `path` (a byte string) under the share restrictions. */
export async function openShared(path: string, o: OpenOptions): Promise<Opened> {
  if (o.chroot === null && o.followSymlinks && o.traverseMounts) {
    return openFinal(path, O_RDONLY | O_NONBLOCK);
  }
  let root = '/';
  let rest = path;
  if (o.chroot !== null && o.chroot !== '') {
    root = squash(o.chroot);
    const p = squash(path);
    const prefix = root === '/' ? '/' : root + '/';
    if (!p.startsWith(prefix) || p.length <= prefix.length) return { status: 403 };
    rest = p.slice(prefix.length);
  }
  const inRoot = o.chroot !== null && o.chroot !== '';
  const pending = rest.split('/').filter((c) => c !== '');
  pending.reverse();  // used as a stack: next component at the end
  const stack: string[] = [];
  let links = 0;
  let dev: number;
  const join = (): string => (root === '/' ? '/' : root + '/') + stack.join('/');
  try {
    dev = (await fs.promises.stat(b(root))).dev;
  } catch (e) {
    return { status: errorStatus((e as NodeJS.ErrnoException).code) };
  }
  const devs: number[] = [];
  while (pending.length) {
    const c = pending.pop()!;
    if (c === '.') continue;
    if (c === '..') {
      if (stack.length) { stack.pop(); dev = devs.pop()!; }
      continue;
    }
    stack.push(c);
    const p = join();
    let st: fs.Stats;
    try {
      st = await fs.promises.lstat(b(p));
    } catch (e) {
      return { status: errorStatus((e as NodeJS.ErrnoException).code) };
    }
    if (st.isSymbolicLink()) {
      if (!o.followSymlinks || ++links > MAX_LINKS) return { status: 403 };
      stack.pop();
      const target = (await fs.promises.readlink(b(p), { encoding: 'buffer' })).toString('latin1');
      const parts = target.split('/').filter((x) => x !== '');
      if (target.startsWith('/')) {
        if (!inRoot) {
          // Without a chroot an absolute link restarts from the real root.
          root = '/';
        }
        stack.length = 0;
        devs.length = 0;
        dev = (await fs.promises.stat(b(root))).dev;
      }
      for (let i = parts.length - 1; i >= 0; i--) pending.push(parts[i]);
      continue;
    }
    if (!o.traverseMounts && st.dev !== dev) return { status: 403 };
    devs.push(dev);
    dev = st.dev;
    if (pending.length && !st.isDirectory()) return { status: 404 };
  }
  return openFinal(join(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
}
