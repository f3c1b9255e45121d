/**
 * `share` (spec/router.md §8): static files from one or more path templates,
 * with `index`, a MIME `types` filter, `chroot`, `follow_symlinks`,
 * `traverse_mounts` and `fallback`.
 *
 * Per request: non-GET/HEAD → fallback or 405; each share path in turn
 * (a path ending in `/` gets the index; else the type filter runs first);
 * a regular file is served (file.ts), a directory reached without a trailing
 * slash is redirected (301, query kept); when every path fails, fallback or the
 * last failure (404/403). Errors other than not-found/forbidden answer 500 at once.
 *
 * Files are opened through the cache of open files (file-cache.ts): when the
 * first path names a cached, unchanged file, the request is answered without
 * waiting for anything.
 */
import type { Request } from '../request.ts';
import { dispatch, enterAction, logFailure, type Action, type Handler } from '../action.ts';
import { compileTemplate, type Template } from '../variables.ts';
import { compilePatterns, type PatternSet } from '../pattern.ts';
import { mimeType } from '../mime.ts';
import { escapeUri, toByteString } from '../uri.ts';
import type { OpenOptions } from './share-open.ts';
import { sendFile } from './file.ts';
import { cacheKey, fileCache, type FileLookup } from './file-cache.ts';

/** A compiled `share` action. */
export class ShareHandler implements Handler {
  readonly paths: Template[];
  readonly index: string;
  readonly types: PatternSet | null;
  readonly chroot: Template | null;
  readonly followSymlinks: boolean;
  readonly traverseMounts: boolean;
  readonly fallback: Action | null;

  constructor(o: {
    paths: Template[]; index: string; types: PatternSet | null; chroot: Template | null;
    followSymlinks: boolean; traverseMounts: boolean; fallback: Action | null;
  }) {
    this.paths = o.paths;
    this.index = o.index;
    this.types = o.types;
    this.chroot = o.chroot;
    this.followSymlinks = o.followSymlinks;
    this.traverseMounts = o.traverseMounts;
    this.fallback = o.fallback;
    this.plainOptions = { chroot: null, followSymlinks: o.followSymlinks, traverseMounts: o.traverseMounts };
  }

  /** Resolution options without a chroot (a chroot template is expanded per request). */
  private readonly plainOptions: OpenOptions;

  run(r: Request): Handler | null {
    if (r.method !== 'GET' && r.method !== 'HEAD') return this.fail(r, 405);
    if (!this.cached(r)) void this.serve(r);
    return null;
  }

  /** Serve the first path from the cache of open files if it is there; false otherwise. */
  private cached(r: Request): boolean {
    let path = this.paths[0].expand(r);
    let opts = this.plainOptions;
    if (this.chroot !== null) {
      opts = { chroot: this.chroot.expand(r), followSymlinks: this.followSymlinks, traverseMounts: this.traverseMounts };
    }
    if (path.endsWith('/')) path += this.index;
    const f = fileCache.hit(cacheKey(path, opts));
    if (f === undefined) return false;
    // The type of a path ending in the index is the index's.
    const table = r.table.settings.mimeTypes;
    if (f.mimeTable !== table) {
      f.mimeType = mimeType(table, path);
      f.mimeTable = table;
    }
    const type = f.mimeType;
    if (this.types !== null && !this.types.test(type ?? '')) {
      f.release();
      return false;
    }
    sendFile(r, f, type, path, opts);
    return true;
  }

  /** Take the fallback when there is one, else answer `status`. */
  private fail(r: Request, status: number): Handler | null {
    if (this.fallback !== null) return this.takeFallback(r);
    r.res.sendError(status);
    return null;
  }

  /** Enter the fallback action (traced with `log_route`, spec/router.md §7.4). */
  private takeFallback(r: Request): Handler | null {
    if (r.table.settings.logRoute) r.conn.log.notice('"fallback" taken');
    return enterAction(r, this.fallback!);
  }

  private async serve(r: Request): Promise<void> {
    let status = 404;
    try {
      const opts: OpenOptions = {
        chroot: null, followSymlinks: this.followSymlinks, traverseMounts: this.traverseMounts,
      };
      for (let i = 0; i < this.paths.length; i++) {
        let path = this.paths[i].expand(r);
        if (i === 0 && this.chroot !== null) opts.chroot = this.chroot.expand(r);
        const dirForm = path.endsWith('/');
        let type: string | undefined;
        if (dirForm) {
          path += this.index;
          type = mimeType(r.table.settings.mimeTypes, this.index);
        } else {
          type = mimeType(r.table.settings.mimeTypes, path);
          if (this.types !== null && !this.types.test(type ?? '')) { status = 403; continue; }
        }
        const o: FileLookup = await fileCache.open(path, opts);
        if (o.status !== 0) {
          if (o.status === 500) {
            r.conn.log.error(`open("${path}") failed (${o.error})`);
            r.res.sendError(500);
            return;
          }
          status = o.status;
          continue;
        }
        if (o.file !== undefined) {
          sendFile(r, o.file, type, path, opts);
          return;
        }
        if (o.directory === true && !dirForm) {
          const q = r.query;
          r.res.sendEmpty(301, ['Location', escapeUri(r.path) + '/' + (q !== '' ? '?' + q : '')]);
          return;
        }
        status = 404;
      }
      if (this.fallback !== null) {
        dispatch(r, this.takeFallback(r));
        return;
      }
      r.res.sendError(status);
    } catch (e) {
      logFailure(r, e);
      r.res.sendError(500);
    }
  }
}

type Obj = Record<string, unknown>;

/** Compile a share action; `compileFallback` compiles the nested fallback action. */
export function compileShare(a: Obj, compileFallback: (f: unknown) => Action): ShareHandler {
  const shares = Array.isArray(a.share) ? a.share as string[] : [a.share as string];
  return new ShareHandler({
    paths: shares.map((s) => compileTemplate(s, 'share')),
    index: typeof a.index === 'string' ? toByteString(a.index) : 'index.html',
    types: a.types !== undefined ? compilePatterns(a.types as string | string[], { fold: 'lower' }) : null,
    chroot: typeof a.chroot === 'string' ? compileTemplate(a.chroot, 'chroot') : null,
    followSymlinks: a.follow_symlinks !== false,
    traverseMounts: a.traverse_mounts !== false,
    fallback: a.fallback !== undefined ? compileFallback(a.fallback) : null,
  });
}
