/**
 * Open files of `share`, kept between requests (spec/router.md §8; DESIGN.md
 * "cached stat").
 *
 * Unit opens, stats and closes a file for every request. Done through Node's
 * thread pool that is four round trips per request, the largest part of
 * serving a small file. Here a regular file, once opened, stays open in a
 * bounded cache keyed by its path (and the share's resolution options):
 *
 * - every hit revalidates the descriptor with one `fstat`: a file written
 *   in place, truncated, chmod'ed, unlinked or replaced by a rename (its old
 *   inode loses its last link) changes `ctime`, size or link count, and the
 *   entry is dropped at once — the request goes the way of a miss. Requests
 *   handled in the same turn of the event loop (read from their sockets
 *   together) share one `fstat` of a file;
 * - what `fstat` of the open file cannot see — the path now naming another
 *   file because a directory or symlink on the way changed, a directory
 *   permission taken away — is seen when the path is resolved again:
 *   `REVALIDATE_MS` (1 s) after the last resolution, the next request starts
 *   that in the background (requests go on being answered from the open
 *   file meanwhile, for at most another second). That is the one window in
 *   which a share may answer from the file the path named before;
 * - the content of small files (≤ `CONTENT_MAX`) is kept too, within
 *   `CONTENT_BUDGET` bytes in all, but only of files that have not changed
 *   for `SETTLE_MS`: a write lands in a later timestamp tick than the last
 *   one, so a settled file cannot change without its `ctime` changing
 *   (files still being written are read afresh each time).
 *
 * Entries leave first-in first-out (a path resolved again goes to the back,
 * so files in use stay); a descriptor in use by a response being streamed is
 * closed only when that response is done.
 */
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { openShared, type OpenOptions } from './share-open.ts';

/** Path resolution is repeated after this long (ms). */
export const REVALIDATE_MS = 1000;
/** Content is kept only of files unchanged for this long (ms). */
export const SETTLE_MS = 1000;
/** Largest file whose content is kept. */
export const CONTENT_MAX = 1024 * 1024;
/** Bytes of content kept in all. */
export const CONTENT_BUDGET = 64 * 1024 * 1024;
/** Open files kept. */
export const MAX_ENTRIES = 256;
/** Content up to this size is also kept as a (latin1) string: sent in one write with the header. */
export const TEXT_MAX = 16 * 1024;

/** The ETag Unit computes: mtime seconds and size in lowercase hex. */
export function fileEtag(st: fs.Stats): string {
  return `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${st.size.toString(16)}"`;
}

/** `Last-Modified` value: the mtime in RFC 1123 GMT (true UTC, unlike Unit). */
export function lastModified(st: fs.Stats): string {
  return new Date(Math.floor(st.mtimeMs / 1000) * 1000).toUTCString();
}

/**
 * One open regular file: in the cache, or opened for a single request.
 * Users `acquire()` it for as long as they read from it and `release()` it after.
 */
export class OpenFile {
  readonly handle: FileHandle;
  /** The descriptor (owned by `handle`). */
  readonly fd: number;
  readonly stat: fs.Stats;
  readonly size: number;
  /** Seconds of mtime, as in the ETag and Last-Modified. */
  readonly mtime: number;
  readonly etag: string;
  readonly lastModified: string;
  /** The whole file, when small and settled; else null (read from `fd`). */
  content: Buffer | null = null;
  /** `content` as a latin1 string, made on first use for files up to TEXT_MAX. */
  private text: string | null = null;
  /** The header fields of a plain 200 answer, for the MIME type `fieldsType`. */
  private fields: string[] | null = null;
  private fieldsType: string | undefined = undefined;
  /** Precompressed siblings looked up since the last resolution: coding → present. */
  siblings: Map<string, boolean> | null = null;
  /** `Date.now()` of the last path resolution. */
  resolvedAt: number;
  /** The event-loop turn of the last `fstat` that found it unchanged. */
  checkedTurn = -1;
  /** The MIME table `mimeType` was looked up in (a share's settings), and the type found there. */
  mimeTable: unknown = null;
  mimeType: string | undefined = undefined;
  private refs = 0;
  /** Out of the cache (or never in it): closed when the last user releases it. */
  private dropped: boolean;
  private closed = false;

  /** The path and options it was opened with, to resolve it again. */
  readonly path: string;
  readonly opts: OpenOptions;
  /** A resolution of the path is under way. */
  resolving = false;

  constructor(handle: FileHandle, stat: fs.Stats, cached: boolean, path: string, opts: OpenOptions) {
    this.handle = handle;
    this.path = path;
    this.opts = opts;
    this.fd = handle.fd;
    this.stat = stat;
    this.size = stat.size;
    this.mtime = Math.floor(stat.mtimeMs / 1000);
    this.etag = fileEtag(stat);
    this.lastModified = lastModified(stat);
    this.resolvedAt = Date.now();
    this.dropped = !cached;
  }

  /** The content as a latin1 string (the same bytes), when kept and small; else null. */
  contentText(): string | null {
    if (this.text !== null) return this.text;
    const c = this.content;
    if (c === null || c.length > TEXT_MAX) return null;
    return this.text = c.toString('latin1');
  }

  /** Last-Modified, ETag and Content-Type (when `type` is known) of a plain 200 answer; not to be changed. */
  plainFields(type: string | undefined): string[] {
    if (this.fields !== null && this.fieldsType === type) return this.fields;
    const f = ['Last-Modified', this.lastModified, 'ETag', this.etag];
    if (type !== undefined) f.push('Content-Type', type);
    this.fieldsType = type;
    return this.fields = f;
  }

  acquire(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs <= 0 && this.dropped) this.close();
  }

  /** Leave the cache: closed now, or when the last user is done. */
  drop(): void {
    this.dropped = true;
    if (this.refs <= 0) this.close();
  }

  /** True when `st` (of this descriptor or of the path) shows the same, unchanged file. */
  same(st: fs.Stats): boolean {
    const s = this.stat;
    return st.ino === s.ino && st.dev === s.dev && st.ctimeMs === s.ctimeMs && st.size === s.size &&
      st.mtimeMs === s.mtimeMs && st.nlink > 0;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handle.close().catch(() => { /* already closed */ });
  }
}

/** Outcome of opening a share path: status 0 with a file (acquired) or a directory; 403/404; 500 with `error`. */
export interface FileLookup {
  status: number;
  file?: OpenFile;
  directory?: boolean;
  error?: string;
}

/** The current turn of the event loop, as far as revalidation is concerned (see hit()). */
let turn = 0;
let turnEnding = false;

function nextTurn(): void {
  turn++;
  turnEnding = false;
}

/** Cache key of `path` opened under `o`. */
export function cacheKey(path: string, o: OpenOptions): string {
  if (o.chroot === null && o.followSymlinks && o.traverseMounts) return path;
  return `${o.chroot ?? ''}\0${o.followSymlinks ? 1 : 0}${o.traverseMounts ? 1 : 0}\0${path}`;
}

/** Limits of a FileCache; the defaults are the constants above. */
export interface FileCacheOptions {
  revalidateMs?: number;
  settleMs?: number;
  contentMax?: number;
  contentBudget?: number;
  maxEntries?: number;
}

/** The bounded set of open files (one per router process). */
export class FileCache {
  private readonly entries = new Map<string, OpenFile>();
  private contentBytes = 0;
  private revalidateMs = REVALIDATE_MS;
  private settleMs = SETTLE_MS;
  private contentMax = CONTENT_MAX;
  private contentBudget = CONTENT_BUDGET;
  private maxEntries = MAX_ENTRIES;

  constructor(o: FileCacheOptions = {}) {
    this.configure(o);
  }

  /** Change the limits (unset ones go back to the defaults); cached files stay until they leave. */
  configure(o: FileCacheOptions): void {
    this.revalidateMs = o.revalidateMs ?? REVALIDATE_MS;
    this.settleMs = o.settleMs ?? SETTLE_MS;
    this.contentMax = o.contentMax ?? CONTENT_MAX;
    this.contentBudget = o.contentBudget ?? CONTENT_BUDGET;
    this.maxEntries = o.maxEntries ?? MAX_ENTRIES;
  }

  /**
   * The cached file for `key` if it is still valid (see the module comment),
   * acquired; undefined on a miss. Synchronous: one `fstat`.
   */
  hit(key: string): OpenFile | undefined {
    const f = this.entries.get(key);
    if (f === undefined) return undefined;
    if (f.checkedTurn === turn) return f.acquire();
    const age = Date.now() - f.resolvedAt;
    if (age >= this.revalidateMs) {
      if (age >= 2 * this.revalidateMs) return undefined;
      if (!f.resolving) this.resolveAgain(key, f);
    }
    let st: fs.Stats;
    try {
      st = fs.fstatSync(f.fd);
    } catch {
      this.remove(key, f);
      return undefined;
    }
    if (!f.same(st)) {
      this.remove(key, f);
      return undefined;
    }
    f.checkedTurn = turn;
    if (!turnEnding) {
      turnEnding = true;
      setImmediate(nextTurn);
    }
    return f.acquire();
  }

  /**
   * Open `path` under the share options: from the cache when valid, else
   * resolved and opened again (and kept when it is a regular file).
   */
  async open(path: string, o: OpenOptions): Promise<FileLookup> {
    const key = cacheKey(path, o);
    const f = this.hit(key);
    if (f !== undefined) return { status: 0, file: f };
    const opened = await openShared(path, o);
    if (opened.status !== 0) {
      const old = this.entries.get(key);
      if (old !== undefined) this.remove(key, old);
      return { status: opened.status, error: opened.error };
    }
    const handle = opened.handle!;
    const st = opened.stat!;
    if (!st.isFile()) {
      await handle.close().catch(() => {});
      return { status: 0, directory: st.isDirectory() };
    }
    return { status: 0, file: await this.admit(key, handle, st, path, o) };
  }

  /** Resolve the path of `f` again, in the background; the entry is refreshed, replaced or dropped. */
  private resolveAgain(key: string, f: OpenFile): void {
    f.resolving = true;
    openShared(f.path, f.opts).then(async (o) => {
      if (o.status === 0 && o.stat!.isFile()) {
        (await this.admit(key, o.handle!, o.stat!, f.path, f.opts)).release();
        return;
      }
      if (o.status === 0) await o.handle!.close().catch(() => {});
      if (this.entries.get(key) === f) this.remove(key, f);
    }).catch(() => {
      if (this.entries.get(key) === f) this.remove(key, f);
    }).finally(() => { f.resolving = false; });
  }

  /**
   * Keep a newly opened regular file (or refresh the entry it turns out to
   * be). Returns it acquired: it stays open however the cache changes meanwhile.
   */
  private async admit(key: string, handle: FileHandle, st: fs.Stats, path: string, opts: OpenOptions): Promise<OpenFile> {
    const old = this.entries.get(key);
    if (old !== undefined && old.same(st)) {
      // The path still names the same, unchanged file: keep the entry (and its content).
      old.acquire();
      await handle.close().catch(() => {});
      old.resolvedAt = Date.now();
      old.siblings = null;
      this.entries.delete(key);
      this.entries.set(key, old);
      if (old.content === null) {
        const content = await this.settledContent(old);
        if (content !== null && old.content === null && this.entries.get(key) === old) {
          old.content = content;
          this.contentBytes += content.length;
          this.evict();
        }
      }
      return old;
    }
    const f = new OpenFile(handle, st, true, path, { ...opts }).acquire();
    f.content = await this.settledContent(f);
    const again = this.entries.get(key);
    if (again !== undefined) this.remove(key, again);
    this.entries.set(key, f);
    if (f.content !== null) this.contentBytes += f.content.length;
    this.evict();
    return f;
  }

  /** The content of `f` when it is small and settled (and did not change while read), else null. */
  private async settledContent(f: OpenFile): Promise<Buffer | null> {
    const st = f.stat;
    if (st.size > this.contentMax || Date.now() - Math.max(st.mtimeMs, st.ctimeMs) < this.settleMs) return null;
    const content = await readContent(f.handle, st.size);
    if (content === null) return null;
    try {
      return f.same(fs.fstatSync(f.fd)) ? content : null;
    } catch {
      return null;
    }
  }

  private remove(key: string, f: OpenFile): void {
    if (this.entries.get(key) === f) {
      this.entries.delete(key);
      if (f.content !== null) this.contentBytes -= f.content.length;
    }
    f.drop();
  }

  private evict(): void {
    for (const [k, f] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.contentBytes <= this.contentBudget) return;
      this.remove(k, f);
    }
  }

  /** Close every cached file (they reopen on demand). */
  clear(): void {
    for (const [k, f] of this.entries) this.remove(k, f);
  }

  /** Number of cached files and bytes of content, for tests. */
  get stats(): { files: number; contentBytes: number } {
    return { files: this.entries.size, contentBytes: this.contentBytes };
  }
}

/** The whole file (`size` bytes), or null when it turned out shorter. */
async function readContent(handle: FileHandle, size: number): Promise<Buffer | null> {
  const buf = Buffer.allocUnsafeSlow(size);
  let off = 0;
  try {
    while (off < size) {
      const { bytesRead } = await handle.read(buf, off, size - off, off);
      if (bytesRead === 0) return null;
      off += bytesRead;
    }
  } catch {
    return null;
  }
  return buf;
}

/** The process-wide cache of open share files. */
export const fileCache = new FileCache();
