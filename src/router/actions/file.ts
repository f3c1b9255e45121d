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
import type fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { Request } from '../request.ts';
import { openShared, type OpenOptions } from './share-open.ts';
import { CACHE_ENTRY_MAX, createEncoder, staticCache, type Compressor } from '../compression.ts';

/** Ranges above this count are answered with the whole file. */
const MAX_RANGES = 64;

/** The ETag Unit computes: mtime seconds and size in lowercase hex. */
export function fileEtag(st: fs.Stats): string {
  return `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${st.size.toString(16)}"`;
}

/** `Last-Modified` value: the mtime in RFC 1123 GMT (true UTC, unlike Unit). */
export function lastModified(st: fs.Stats): string {
  return new Date(Math.floor(st.mtimeMs / 1000) * 1000).toUTCString();
}

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
function preconditions(r: Request, st: fs.Stats, etag: string): number {
  const mtime = Math.floor(st.mtimeMs / 1000);
  const im = r.header('if-match');
  if (im !== undefined) {
    if (!strongMatch(etagList(im), etag)) return 412;
  } else {
    const ius = parseDate(r.header('if-unmodified-since'));
    if (!Number.isNaN(ius) && mtime > ius) return 412;
  }
  const inm = r.header('if-none-match');
  if (inm !== undefined) {
    if (weakMatch(etagList(inm), etag)) return 304;
  } else {
    const ims = parseDate(r.header('if-modified-since'));
    if (!Number.isNaN(ims) && mtime <= ims) return 304;
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

/** Read [start, end] of the file into the response without ending it. */
async function copyRange(fh: FileHandle, r: Request, start: number, end: number): Promise<void> {
  await pipeline(fh.createReadStream({ start, end, autoClose: false }), r.res, { end: false });
}

function ignore(): void { /* the client went away; the response is already destroyed */ }

/** The first `size` bytes of `fh`. */
async function readAll(fh: FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  while (off < size) {
    const { bytesRead } = await fh.read(buf, off, size - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === size ? buf : buf.subarray(0, off);
}

/** Send `fh` compressed with `c` (GET or HEAD, status 200). */
async function sendCompressed(r: Request, fh: FileHandle, st: fs.Stats, path: string, c: Compressor, fields: string[]): Promise<void> {
  const res = r.res;
  if (st.size <= CACHE_ENTRY_MAX) {
    const key = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}:${c.encoding}:${c.level}:${path}`;
    const body = await staticCache.get(key, c, () => readAll(fh, st.size));
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
  await pipeline(fh.createReadStream({ start: 0, end: st.size - 1, autoClose: false }), createEncoder(c), res).catch(ignore);
}

/**
 * Answer `r` with the regular file `fh` (closed when done).
 * @param type MIME type, undefined when unknown (no Content-Type)
 * @param opts the share's open restrictions, for the precompressed siblings
 */
export async function sendFile(r: Request, fh: FileHandle, st: fs.Stats, type: string | undefined,
  path: string, opts?: OpenOptions): Promise<void> {
  const res = r.res;
  let file = fh;
  let stat = st;
  let encoding: string | null = null;
  try {
    const ae = r.header('accept-encoding');
    const comp = r.table.settings.compression;
    const sibling = async (enc: string): Promise<boolean> => {
      const o = await openShared(path + SUFFIX[enc], opts ?? { chroot: null, followSymlinks: true, traverseMounts: true });
      if (o.status !== 0) return false;
      if (!o.stat!.isFile()) { await o.handle!.close(); return false; }
      file = o.handle!;
      stat = o.stat!;
      encoding = enc;
      return true;
    };
    let compressor: Compressor | null = null;
    let vary = false;
    if (comp === null) {
      // Precompressed siblings only, by the client's preference.
      if (ae !== undefined && st.size > 0) {
        for (const enc of acceptedEncodings(ae)) if (await sibling(enc)) break;
      }
      vary = encoding !== null;
    } else if (st.size > 0 && comp.typeAllowed(type ?? '')) {
      // Unit's choice (§11); a precompressed sibling in the chosen coding saves the work.
      vary = true;
      const choice = comp.choose(ae, st.size);
      if (choice.notAcceptable) { res.sendError(406); return; }
      const c = choice.compressor;
      if (c !== null && !(Object.hasOwn(SUFFIX, c.encoding) && await sibling(c.encoding))) compressor = c;
    }

    const etag = fileEtag(stat);
    const fields = ['Last-Modified', lastModified(stat), 'ETag', etag];
    if (type !== undefined) fields.push('Content-Type', type);
    if (encoding !== null) fields.push('Content-Encoding', encoding);
    if (vary) fields.push('Vary', 'Accept-Encoding');

    const pre = preconditions(r, stat, etag);
    if (pre === 412) { res.sendError(412); return; }
    if (pre === 304) {
      const f = ['Last-Modified', fields[1], 'ETag', etag];
      if (vary) f.push('Vary', 'Accept-Encoding');
      res.sendHeaderOnly(304, f, null);
      return;
    }

    const size = stat.size;
    const range = r.method === 'GET' ? r.header('range') : undefined;
    let ranges: Array<[number, number]> | null = null;
    if (range !== undefined) {
      ranges = parseRange(range, size);
      const ifRange = r.header('if-range');
      if (ranges !== null && ifRange !== undefined) {
        const ok = ifRange.startsWith('"') ? ifRange === etag
          : parseDate(ifRange) === Math.floor(stat.mtimeMs / 1000);
        if (!ok) ranges = null;
      }
    }
    if (ranges !== null && ranges.length === 0) {
      res.sendError(416, ['Content-Range', `bytes */${size}`]);
      return;
    }
    if (compressor !== null && ranges === null) {
      const f = fields.slice();
      f.splice(f.indexOf('Vary'), 0, 'Content-Encoding', compressor.encoding);
      await sendCompressed(r, file, stat, path, compressor, f);
      return;
    }
    if (r.method === 'HEAD' || size === 0) {
      res.sendHeaderOnly(200, fields, size);
      return;
    }
    if (ranges === null) {
      res.writeStart(200, fields, size);
      await pipeline(file.createReadStream({ start: 0, end: size - 1, autoClose: false }), res).catch(ignore);
      return;
    }
    if (ranges.length === 1) {
      const [a, e] = ranges[0];
      fields.push('Content-Range', `bytes ${a}-${e}/${size}`);
      res.writeStart(206, fields, e - a + 1);
      await pipeline(file.createReadStream({ start: a, end: e, autoClose: false }), res).catch(ignore);
      return;
    }
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
        await copyRange(file, r, ranges[i][0], ranges[i][1]);
      }
      res.end(tail, 'latin1');
    } catch {
      res.destroy();
    }
  } finally {
    await fh.close().catch(ignore);
    if (file !== fh) await file.close().catch(ignore);
  }
}
