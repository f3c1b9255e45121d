/**
 * Response compression, `settings.http.compression` (spec/router.md §11).
 *
 * Applies to static files (GET/HEAD, non-empty) and to application responses
 * that announce their length; never to `return`, error pages or proxied
 * responses. Per response: a compressor must be configured, the MIME type must
 * pass `types`, no `Content-Encoding` may be present, and the client's
 * Accept-Encoding must pick one (Unit's parsing, below); bodies shorter than
 * the compressor's `min_length` stay as they are. Every response that went
 * through the choice gets `Vary: Accept-Encoding` (Unit adds none; caches need it).
 *
 * Static files: small ones are compressed once and kept (by path, mtime, size
 * and coding, bounded in total) and sent with `Content-Length` = compressed
 * size, as Unit does; larger ones are compressed while streaming (chunked, or
 * close-delimited for HTTP/1.0) rather than held in memory.
 */
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import { compilePatterns, type PatternSet } from './pattern.ts';

/** Node builds with zstd support expose this (else `zstd` is refused by validation). */
const zstdCompress = (zlib as unknown as { createZstdCompress?: (o?: object) => Transform }).createZstdCompress;
const zstdParam = (zlib.constants as Record<string, number>).ZSTD_c_compressionLevel;

/** One configured compressor. */
export interface Compressor {
  /** The content coding: `gzip`, `deflate`, `br`, `zstd` or `identity`. */
  encoding: string;
  /** Level within the coding's range (out-of-range configured values fall back to its default). */
  level: number;
  /** Smallest body compressed, bytes (0: any). */
  minLength: number;
}

/** The outcome of the choice for one response. */
export interface Choice {
  /** The compressor to apply, or null to send the body as it is. */
  compressor: Compressor | null;
  /** The client refuses every coding on offer, identity included (static files answer 406). */
  notAcceptable: boolean;
}

const NONE: Choice = { compressor: null, notAcceptable: false };

/** Level ranges and defaults (§11). */
function level(encoding: string, configured: unknown): number {
  const n = typeof configured === 'number' && Number.isInteger(configured) ? configured : NaN;
  switch (encoding) {
    case 'gzip':
    case 'deflate':
      return n >= -1 && n <= 9 ? n : -1;
    case 'br':
      return n >= 0 && n <= 11 ? n : 11;
    case 'zstd':
      return n >= -7 && n <= 22 ? n : 3;
    default:
      return 0;
  }
}

/** `q` of an Accept-Encoding element: 0–1 with up to three decimals, else NaN. */
function qvalue(v: string): number {
  return /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(v) ? Number(v) : NaN;
}

/** A compiled `settings.http.compression`. */
export class Compression {
  readonly types: PatternSet | null;
  /** Compressors by coding name, in configuration order. */
  readonly compressors: Map<string, Compressor>;

  constructor(types: PatternSet | null, compressors: Map<string, Compressor>) {
    this.types = types;
    this.compressors = compressors;
  }

  /** Whether a response of MIME type `type` (undefined: unknown) may be compressed at all. */
  typeAllowed(type: string | undefined): boolean {
    if (type === undefined) return false;
    return this.types === null || this.types.test(type);
  }

  /**
   * Unit's Accept-Encoding choice (§11 step 2): spaces removed, elements split
   * at `,`, optional `;q=V`; tokens compared case-sensitively with the
   * configured codings; `*` stands for identity; q=0 on identity or `*`
   * forbids identity; the highest q wins, the later element on a tie.
   * @param accept the Accept-Encoding value, undefined when absent
   * @param length body length, for `min_length`
   */
  choose(accept: string | undefined, length: number): Choice {
    if (accept === undefined) return NONE;
    let best: Compressor | null = null;
    let bestQ = 0;
    let identityForbidden = false;
    for (const raw of accept.replace(/[ \t]/g, '').split(',')) {
      if (raw === '') continue;
      const semi = raw.indexOf(';');
      const token = semi < 0 ? raw : raw.slice(0, semi);
      let q = 1;
      if (semi >= 0) {
        const param = raw.slice(semi + 1);
        if (!param.startsWith('q=')) continue;
        q = qvalue(param.slice(2));
        if (Number.isNaN(q)) continue;
      }
      const name = token === '*' ? 'identity' : token;
      if (name === 'identity' && q === 0) identityForbidden = true;
      const c = this.compressors.get(name);
      if (c === undefined || q === 0) continue;
      if (q >= bestQ) {
        best = c;
        bestQ = q;
      }
    }
    if (best === null) return identityForbidden ? { compressor: null, notAcceptable: true } : NONE;
    if (best.encoding === 'identity' || length < best.minLength) return NONE;
    return { compressor: best, notAcceptable: false };
  }
}

type Obj = Record<string, unknown>;

/** Compile `settings.http.compression`; null when absent or without compressors. */
export function compileCompression(value: unknown): Compression | null {
  if (value === null || typeof value !== 'object') return null;
  const o = value as Obj;
  const list = Array.isArray(o.compressors) ? o.compressors as Obj[] : o.compressors ? [o.compressors as Obj] : [];
  const compressors = new Map<string, Compressor>();
  for (const c of list) {
    const encoding = String(c.encoding);
    if (compressors.has(encoding)) continue;
    compressors.set(encoding, {
      encoding,
      level: level(encoding, c.level),
      minLength: typeof c.min_length === 'number' ? Math.max(0, c.min_length) : 0,
    });
  }
  if (compressors.size === 0) return null;
  const types = o.types !== undefined ? compilePatterns(o.types as string | string[], { fold: 'lower' }) : null;
  return new Compression(types, compressors);
}

/** A streaming encoder for `c`. */
export function createEncoder(c: Compressor): Transform {
  switch (c.encoding) {
    case 'gzip':
      return zlib.createGzip({ level: c.level });
    case 'deflate':
      // zlib wrapper (RFC 1950), as HTTP `deflate` means; Unit uses the same stream format.
      return zlib.createDeflate({ level: c.level });
    case 'br':
      return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: c.level } });
    case 'zstd':
      if (zstdCompress !== undefined) return zstdCompress({ params: { [zstdParam]: c.level } });
      break;
  }
  throw new Error(`unsupported content coding "${c.encoding}"`);
}

/** Compress a whole buffer with `c` (off the main thread: zlib's thread pool). */
export function compressBuffer(c: Compressor, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (e: Error | null, out: Buffer): void => (e ? reject(e) : resolve(out));
    switch (c.encoding) {
      case 'gzip': zlib.gzip(data, { level: c.level }, done); return;
      case 'deflate': zlib.deflate(data, { level: c.level }, done); return;
      case 'br': zlib.brotliCompress(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: c.level } }, done); return;
      default: {
        const enc = createEncoder(c);
        const chunks: Buffer[] = [];
        enc.on('data', (b: Buffer) => chunks.push(b));
        enc.on('end', () => resolve(Buffer.concat(chunks)));
        enc.on('error', reject);
        enc.end(data);
      }
    }
  });
}

/** Static files up to this size are compressed once and cached; larger ones are streamed. */
export const CACHE_ENTRY_MAX = 1024 * 1024;
/** Total bytes of compressed static files kept. */
const CACHE_TOTAL_MAX = 32 * 1024 * 1024;

/**
 * Compressed static files, least recently used first out. Keyed by path,
 * mtime, size, coding and level, so a changed file is never served stale.
 */
class StaticCache {
  private readonly entries = new Map<string, Buffer | Promise<Buffer>>();
  private total = 0;

  /** The compressed bytes of a file, compressing `read()` on a miss. */
  async get(key: string, c: Compressor, read: () => Promise<Buffer>): Promise<Buffer> {
    const have = this.entries.get(key);
    if (have !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, have);
      return have;
    }
    const p = read().then((data) => compressBuffer(c, data));
    this.entries.set(key, p);
    try {
      const out = await p;
      if (this.entries.get(key) === p) {
        this.entries.set(key, out);
        this.total += out.length;
        this.evict();
      }
      return out;
    } catch (e) {
      if (this.entries.get(key) === p) this.entries.delete(key);
      throw e;
    }
  }

  private evict(): void {
    for (const [k, v] of this.entries) {
      if (this.total <= CACHE_TOTAL_MAX) return;
      if (v instanceof Promise) continue;
      this.entries.delete(k);
      this.total -= v.length;
    }
  }
}

/** The process-wide cache of compressed static files. */
export const staticCache = new StaticCache();
