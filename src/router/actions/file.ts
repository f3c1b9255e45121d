/**
 * Sending a regular file for `share` (spec/router.md §8.2), plus what Unit
 * never did and its users asked for:
 *   - conditional requests (RFC 9110 §13): If-Match / If-Unmodified-Since → 412,
 *     If-None-Match / If-Modified-Since → 304;
 *   - byte ranges (RFC 9110 §14): 206 with one range or multipart/byteranges,
 *     416 with `Content-Range: bytes *\/SIZE`, If-Range;
 *   - precompressed siblings (`FILE.br`, `FILE.gz`) chosen by Accept-Encoding,
 *     with `Content-Encoding` and `Vary: Accept-Encoding`.
 * With `settings.http.compression` (§11) files are compressed on the fly: small
 * ones once (cached, sent with the compressed Content-Length as Unit does),
 * large ones while streaming; a client refusing every coding, identity
 * included, gets 406. Range requests are answered from the identity file.
 * A plain GET gets exactly Unit's answer: Last-Modified, ETag
 * `"<mtime hex>-<size hex>"`, Content-Type when known, Content-Length.
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { Request } from '../request.ts';
import { logFailure } from '../action.ts';
import type { OpenOptions } from './share-open.ts';
import { fileCache, type OpenFile } from './file-cache.ts';
import { CACHE_ENTRY_MAX, createEncoder, staticCache, type Compressor } from '../compression.ts';

export { fileEtag, lastModified } from './file-cache.ts';

/** Ranges above this count are answered with the whole file. */
const MAX_RANGES = 64;

function parseDate(v: string | undefined): number {
  if (v === undefined) return NaN;
  const t = Date.parse(v);
  return Number.isNaN(t) ? NaN : Math.floor(t / 1000);
}

/** Entity tags of an If-Match / If-None-Match value; ['*'] for a wildcard. */
function etagList(v: string): string[] {
  const out: string[] = [];
  const re = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(v)) !== null && m[0] !== '') out.push(m[1]);
  return out;
}

const strongMatch = (list: string[], etag: string): boolean =>
  list.some((t) => t === '*' || (!t.startsWith('W/') && t === etag));
const weakMatch = (list: string[], etag: string): boolean =>
  list.some((t) => t === '*' || (t.startsWith('W/') ? t.slice(2) : t) === etag);

/**
 * RFC 9110 §13.2.2 order. @returns 0 to proceed, 304 or 412.
 */
function preconditions(r: Request, f: OpenFile): number {
  const im = r.header('if-match');
  if (im !== undefined) {
    if (!strongMatch(etagList(im), f.etag)) return 412;
  } else {
    const ius = parseDate(r.header('if-unmodified-since'));
    if (!Number.isNaN(ius) && f.mtime > ius) return 412;
  }
  const inm = r.header('if-none-match');
  if (inm !== undefined) {
    if (weakMatch(etagList(inm), f.etag)) return 304;
  } else {
    const ims = parseDate(r.header('if-modified-since'));
    if (!Number.isNaN(ims) && f.mtime <= ims) return 304;
  }
  return 0;
}

/**
 * Parse a Range value against `size`.
 * @returns null to ignore it (bad syntax, too many ranges), [] when nothing
 *          is satisfiable (416), else the [start, end] pairs (inclusive).
 */
export function parseRange(v: string, size: number): Array<[number, number]> | null {
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(v);
  if (m === null) return null;
  const out: Array<[number, number]> = [];
  const specs = m[1].split(',');
  if (specs.length > MAX_RANGES) return null;
  for (const raw of specs) {
    const s = raw.trim();
    if (s === '') continue;
    const sm = /^(\d*)-(\d*)$/.exec(s);
    if (sm === null || (sm[1] === '' && sm[2] === '')) return null;
    if (sm[1] === '') {
      const n = Number(sm[2]);
      if (n === 0 || size === 0) continue;
      out.push([Math.max(0, size - n), size - 1]);
    } else {
      const a = Number(sm[1]);
      if (sm[2] !== '' && Number(sm[2]) < a) return null;
      const e = sm[2] === '' ? size - 1 : Number(sm[2]);
      if (a >= size) continue;
      out.push([a, Math.min(e, size - 1)]);
    }
  }
  return out;
}

/** Encodings in the client's Accept-Encoding with q > 0 among br and gzip, preferred first. */
function acceptedEncodings(ae: string): string[] {
  let br = false, gzip = false;
  for (const part of ae.split(',')) {
    const [tok, ...params] = part.trim().split(';');
    const q = params.map((p) => /^\s*q\s*=\s*([\d.]+)\s*$/i.exec(p)).find((x) => x);
    if (q && !(Number(q[1]) > 0)) continue;
    const t = tok.trim().toLowerCase();
    if (t === 'br') br = true;
    else if (t === 'gzip' || t === 'x-gzip') gzip = true;
  }
  return br && gzip ? ['br', 'gzip'] : br ? ['br'] : gzip ? ['gzip'] : [];
}

const SUFFIX: Record<string, string> = { br: '.br', gzip: '.gz' };

/** Chunk size when a file is streamed from its descriptor. */
const READ_CHUNK = 256 * 1024;

/** Read bytes [start, end] of `f` into the response without ending it. */
function copyRange(f: OpenFile, r: Request, start: number, end: number): Promise<void> {
  if (f.content !== null) {
    const part = f.content.subarray(start, end + 1);
    if (r.res.write(part)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const res = r.res;
      const done = (): void => { res.off('drain', done); res.off('close', gone); resolve(); };
      const gone = (): void => { res.off('drain', done); res.off('close', gone); reject(new Error('closed')); };
      res.on('drain', done);
      res.on('close', gone);
    });
  }
  return pipeline(fs.createReadStream('', { fd: f.fd, start, end, autoClose: false, highWaterMark: READ_CHUNK }), r.res, { end: false });
}

function ignore(): void { /* the client went away; the response is already destroyed */ }

/** Send [start, end] of `f` as the rest of the body and end the response; resolves when done. */
function sendBody(f: OpenFile, r: Request, start: number, end: number): Promise<void> | null {
  if (f.content !== null) {
    if (start === 0 && end === f.size - 1) {
      // A small file goes out in one write with the header, as one string.
      const text = f.contentText();
      if (text !== null) r.res.endWith(text);
      else r.res.end(f.content);
    } else {
      r.res.end(f.content.subarray(start, end + 1));
    }
    return null;
  }
  return pipeline(fs.createReadStream('', { fd: f.fd, start, end, autoClose: false, highWaterMark: READ_CHUNK }), r.res)
    .catch(ignore);
}

/** The whole of `f`. */
async function readAll(f: OpenFile): Promise<Buffer> {
  if (f.content !== null) return f.content;
  const size = f.size;
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await f.handle.read(buf, off, size - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === size ? buf : buf.subarray(0, off);
}

/** Send `f` compressed with `c` (GET or HEAD, status 200). */
async function sendCompressed(r: Request, f: OpenFile, path: string, c: Compressor, fields: string[]): Promise<void> {
  const res = r.res;
  const st = f.stat;
  if (st.size <= CACHE_ENTRY_MAX) {
    const key = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}:${c.encoding}:${c.level}:${path}`;
    const body = await staticCache.get(key, c, () => readAll(f));
    if (r.method === 'HEAD') {
      res.sendHeaderOnly(200, fields, body.length);
      return;
    }
    res.writeStart(200, fields, body.length);
    res.end(body);
    return;
  }
  // Too large to hold: compressed while streaming, so the length is not known in advance.
  if (r.method === 'HEAD') {
    res.sendHeaderOnly(200, fields, null);
    return;
  }
  res.writeStart(200, fields, null);
  await pipeline(fs.createReadStream('', { fd: f.fd, start: 0, end: st.size - 1, autoClose: false, highWaterMark: READ_CHUNK }),
    createEncoder(c), res).catch(ignore);
}

/**
 * Answer `r` with the regular file `f` (acquired by the caller; released
 * here once the response no longer reads from it).
 * @param type MIME type, undefined when unknown (no Content-Type)
 * @param path the file's path, for the precompressed siblings (`path.br`, `path.gz`)
 * @param opts the share's open restrictions, for the siblings
 */
export function sendFile(r: Request, f: OpenFile, type: string | undefined, path: string, opts: OpenOptions): void {
  const ae = r.header('accept-encoding');
  const comp = r.table.settings.compression;
  if ((ae === undefined && comp === null) || f.size === 0) {
    // The plain case: no other representation to choose.
    let p: Promise<void> | null;
    try {
      p = respond(r, f, type, null, null, false, path);
    } catch (e) {
      f.release();
      throw e;
    }
    if (p === null) f.release();
    else p.then(() => f.release(), () => f.release());
    return;
  }
  choose(r, f, type, path, opts, ae, comp).then(() => f.release(), (e: unknown) => {
    f.release();
    logFailure(r, e);
    r.res.sendError(500);
  });
}

/**
 * A precompressed sibling of `f` in coding `enc` (acquired), or null. Its
 * absence is remembered with `f` until `f`'s path is resolved again.
 */
async function sibling(f: OpenFile, path: string, enc: string, opts: OpenOptions): Promise<OpenFile | null> {
  if (f.siblings?.get(enc) === false) return null;
  const o = await fileCache.open(path + SUFFIX[enc], opts);
  (f.siblings ??= new Map()).set(enc, o.file !== undefined);
  return o.file ?? null;
}

/** Pick the representation (precompressed sibling, on-the-fly compression, identity), then respond. */
async function choose(r: Request, f: OpenFile, type: string | undefined, path: string, opts: OpenOptions,
  ae: string | undefined, comp: Request['table']['settings']['compression']): Promise<void> {
  let file = f;
  let encoding: string | null = null;
  let compressor: Compressor | null = null;
  let vary = false;
  try {
    if (comp === null) {
      // Precompressed siblings only, by the client's preference.
      for (const enc of acceptedEncodings(ae!)) {
        const s = await sibling(f, path, enc, opts);
        if (s !== null) { file = s; encoding = enc; break; }
      }
      vary = encoding !== null;
    } else if (comp.typeAllowed(type ?? '')) {
      // Unit's choice (§11); a precompressed sibling in the chosen coding saves the work.
      vary = true;
      const choice = comp.choose(ae, f.size);
      if (choice.notAcceptable) { r.res.sendError(406); return; }
      const c = choice.compressor;
      if (c !== null) {
        const s = Object.hasOwn(SUFFIX, c.encoding) ? await sibling(f, path, c.encoding, opts) : null;
        if (s !== null) { file = s; encoding = c.encoding; } else compressor = c;
      }
    }
    await respond(r, file, type, encoding, compressor, vary, path);
  } finally {
    if (file !== f) file.release();
  }
}

/**
 * Answer with `f` as chosen: conditional requests, ranges, HEAD, the body.
 * Returns null when the response is complete (or its body handed over
 * entirely), else a promise that settles when the file is no longer read.
 */
function respond(r: Request, f: OpenFile, type: string | undefined, encoding: string | null,
  compressor: Compressor | null, vary: boolean, path: string): Promise<void> | null {
  const res = r.res;
  let fields: string[];
  if (encoding === null && !vary && compressor === null) {
    fields = f.plainFields(type);
  } else {
    fields = ['Last-Modified', f.lastModified, 'ETag', f.etag];
    if (type !== undefined) fields.push('Content-Type', type);
    if (encoding !== null) fields.push('Content-Encoding', encoding);
    if (vary) fields.push('Vary', 'Accept-Encoding');
  }

  const pre = preconditions(r, f);
  if (pre === 412) { res.sendError(412); return null; }
  if (pre === 304) {
    const h = ['Last-Modified', f.lastModified, 'ETag', f.etag];
    if (vary) h.push('Vary', 'Accept-Encoding');
    res.sendHeaderOnly(304, h, null);
    return null;
  }

  const size = f.size;
  const range = r.method === 'GET' ? r.header('range') : undefined;
  let ranges: Array<[number, number]> | null = null;
  if (range !== undefined) {
    ranges = parseRange(range, size);
    const ifRange = r.header('if-range');
    if (ranges !== null && ifRange !== undefined) {
      const ok = ifRange.startsWith('"') ? ifRange === f.etag : parseDate(ifRange) === f.mtime;
      if (!ok) ranges = null;
    }
  }
  if (ranges !== null && ranges.length === 0) {
    res.sendError(416, ['Content-Range', `bytes */${size}`]);
    return null;
  }
  if (compressor !== null && ranges === null) {
    fields.splice(fields.indexOf('Vary'), 0, 'Content-Encoding', compressor.encoding);
    return sendCompressed(r, f, path, compressor, fields);
  }
  if (r.method === 'HEAD' || size === 0) {
    res.sendHeaderOnly(200, fields, size);
    return null;
  }
  if (ranges === null) {
    res.writeStart(200, fields, size);
    return sendBody(f, r, 0, size - 1);
  }
  if (ranges.length === 1) {
    const [a, e] = ranges[0];
    res.writeStart(206, [...fields, 'Content-Range', `bytes ${a}-${e}/${size}`], e - a + 1);
    return sendBody(f, r, a, e);
  }
  return sendRanges(r, f, type, ranges, fields);
}

/** 206 multipart/byteranges with every range of `ranges`. */
async function sendRanges(r: Request, f: OpenFile, type: string | undefined, ranges: Array<[number, number]>,
  fields: string[]): Promise<void> {
  const res = r.res;
  const size = f.size;
  const boundary = randomBytes(12).toString('hex');
  const heads = ranges.map(([a, e]) => `\r\n--${boundary}\r\n` +
    (type !== undefined ? `Content-Type: ${type}\r\n` : '') +
    `Content-Range: bytes ${a}-${e}/${size}\r\n\r\n`);
  const tail = `\r\n--${boundary}--\r\n`;
  let total = tail.length;
  for (let i = 0; i < ranges.length; i++) total += heads[i].length + ranges[i][1] - ranges[i][0] + 1;
  const mf = fields.filter((_, i) => i % 2 === 0 ? fields[i] !== 'Content-Type' : fields[i - 1] !== 'Content-Type');
  mf.push('Content-Type', `multipart/byteranges; boundary=${boundary}`);
  res.writeStart(206, mf, total);
  try {
    for (let i = 0; i < ranges.length; i++) {
      res.write(heads[i], 'latin1');
      await copyRange(f, r, ranges[i][0], ranges[i][1]);
    }
    res.end(tail, 'latin1');
  } catch {
    res.destroy();
  }
}
