/**
 * Chunked request bodies (spec/router.md §2.7, `chunked_transform`).
 *
 * Junction accepts them for every target by default (Unit answers 411 unless
 * `chunked_transform` is true; `false` restores that). The body is read
 * completely before routing, bounded by `max_body_size` (→ 413), and the
 * request then carries a `Content-Length` field instead of
 * `Transfer-Encoding`, as Unit gives it to applications, upstreams and
 * `$header_*`: every target sees a sized body.
 *
 * Memory stays bounded as in Unit: up to `body_buffer_size` bytes are kept in
 * memory, a larger body is spooled to an unlinked temporary file
 * `<body_temp_path>/req-XXXXXXXX` and read back from it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Request } from './request.ts';

/** Read size when a spooled body is played back. */
const READ_SIZE = 64 * 1024;
/** Bytes waiting for the temporary file before the client is paused. */
const WRITE_HIGH_WATER = 256 * 1024;

/** Where a body is collected: memory first, then an unlinked temporary file. */
class Spool {
  private readonly limit: number;
  private readonly dir: string;
  private chunks: Buffer[] = [];
  size = 0;
  private file: Promise<FileHandle> | null = null;
  private writing: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private failed: Error | null = null;
  private closed = false;

  constructor(limit: number, dir: string) {
    this.limit = limit;
    this.dir = dir;
  }

  /**
   * Add a chunk. @returns false when the caller should pause until `drained`
   * resolves (the temporary file is behind).
   */
  write(c: Buffer): boolean {
    this.size += c.length;
    if (this.file === null && this.size <= this.limit) {
      this.chunks.push(c);
      return true;
    }
    if (this.file === null) {
      this.file = openTemp(this.dir);
      const first = Buffer.concat(this.chunks);
      this.chunks = [];
      this.queue(first);
    }
    this.queue(c);
    return this.queued < WRITE_HIGH_WATER;
  }

  /** Resolves when queued writes have reached the file. */
  drained(): Promise<unknown> {
    return this.writing;
  }

  private queue(c: Buffer): void {
    this.queued += c.length;
    const file = this.file!;
    this.writing = this.writing.then(async () => {
      if (this.failed !== null) return;
      try {
        const fh = await file;
        let off = 0;
        while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
      } catch (e) {
        this.failed = e as Error;
      }
      this.queued -= c.length;
    });
  }

  /**
   * The whole body as a readable source.
   * @throws Error when the temporary file could not be written (→ 500).
   */
  async done(): Promise<{ chunks: Buffer[] } | { fh: FileHandle }> {
    if (this.file === null) return { chunks: this.chunks };
    await this.writing;
    if (this.failed !== null) throw this.failed;
    this.closed = true;
    return { fh: await this.file };
  }

  /** The request went away: release the temporary file. */
  discard(): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks = [];
    void this.writing.then(() => this.file?.then((fh) => fh.close()).catch(ignore));
  }
}

function ignore(): void { /* nothing to do */ }

/** Create `<dir>/req-XXXXXXXX` (0600) and unlink it at once: only the descriptor keeps it. */
async function openTemp(dir: string): Promise<FileHandle> {
  const name = path.join(dir, `req-${randomBytes(4).toString('hex')}`);
  const fh = await fs.promises.open(name, 'wx+', 0o600);
  await fs.promises.unlink(name).catch(ignore);
  return fh;
}

/**
 * The request body as targets read it after a chunked body was collected: an
 * IncomingMessage (so apps and proxies treat it like any request) whose data
 * comes from memory or from the spooled file, with back-pressure.
 */
class SizedBody extends IncomingMessage {
  private fh: FileHandle | null = null;
  private pos = 0;
  private total = 0;
  private reading = false;

  /** Play back `fh` (`total` bytes) on demand. */
  fromFile(fh: FileHandle, total: number): void {
    this.fh = fh;
    this.total = total;
  }

  _read(): void {
    const fh = this.fh;
    if (fh === null || this.reading) return;
    // IncomingMessage starts with readingMore set (its parser pushes by itself); we are pulled.
    (this as unknown as { _readableState: { readingMore: boolean } })._readableState.readingMore = false;
    this.reading = true;
    const n = Math.min(READ_SIZE, this.total - this.pos);
    fh.read(Buffer.allocUnsafe(n), 0, n, this.pos).then(({ bytesRead, buffer }) => {
      this.reading = false;
      if (this.fh === null) return;
      this.pos += bytesRead;
      if (bytesRead === 0 || this.pos >= this.total) {
        if (bytesRead > 0) this.push(buffer.subarray(0, bytesRead));
        this.complete = true;
        this.release();
        this.push(null);
      } else {
        this.push(buffer.subarray(0, bytesRead));
      }
    }, (e: Error) => {
      this.reading = false;
      this.release();
      this.destroy(e);
    });
  }

  _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.release();
    super._destroy(err, cb);
  }

  private release(): void {
    const fh = this.fh;
    this.fh = null;
    if (fh !== null) void fh.close().catch(ignore);
  }
}

/** Fields of `h` without Transfer-Encoding, plus `Content-Length: size`. */
function sizedFields(h: string[], size: number): string[] {
  const fields: string[] = [];
  for (let i = 0; i < h.length; i += 2) {
    if (h[i].toLowerCase() !== 'transfer-encoding') fields.push(h[i], h[i + 1]);
  }
  fields.push('Content-Length', String(size));
  return fields;
}

function sizedMessage(src: IncomingMessage, fields: string[]): SizedBody {
  const m = new SizedBody(src.socket as Socket);
  m.method = src.method;
  m.url = src.url;
  m.httpVersion = src.httpVersion;
  m.httpVersionMajor = src.httpVersionMajor;
  m.httpVersionMinor = src.httpVersionMinor;
  m.rawHeaders = fields;
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const k = fields[i].toLowerCase();
    const prev = headers[k];
    headers[k] = prev === undefined ? fields[i + 1] : Array.isArray(prev) ? [...prev, fields[i + 1]] : [prev, fields[i + 1]];
  }
  m.headers = headers as IncomingMessage['headers'];
  return m;
}

/**
 * Read the chunked body of `r`, then call `next(r)` with `r.req` replaced by a
 * message carrying the decoded body and `r.rawHeaders` by the fields with
 * `Content-Length`. Read errors leave the answer to whoever detected them
 * (413 from the size limit, 400 from the parser, 408 from the timer); a
 * trailer section answers 400 (Unit's grammar has none), a temporary file
 * that cannot be written 500.
 */
export function readChunkedBody(r: Request, next: (r: Request) => void): void {
  const src = r.req;
  const s = r.table.settings;
  const spool = new Spool(Math.max(0, s.bodyBufferSize), s.bodyTempPath);
  let ended = false;
  src.on('data', (c: Buffer) => {
    if (!spool.write(c)) {
      src.pause();
      void spool.drained().then(() => src.resume());
    }
  });
  src.on('close', () => { if (!ended) spool.discard(); });
  src.on('end', () => {
    ended = true;
    if (src.rawTrailers.length > 0) {
      // Unit's chunk grammar has no trailer section: the last chunk ends with CRLF at once.
      spool.discard();
      r.forceClose = true;
      r.res.sendError(400);
      return;
    }
    spool.done().then((body) => {
      if (r.res.headersSent || r.res.writableEnded) {  // already answered (413, 400, 408)
        if ('fh' in body) void body.fh.close().catch(ignore);
        return;
      }
      r.conn.onBodyComplete();
      const fields = sizedFields(r.rawHeaders, spool.size);
      const m = sizedMessage(src, fields);
      if ('fh' in body) {
        if (spool.size > 0) m.fromFile(body.fh, spool.size);
        else { void body.fh.close().catch(ignore); m.complete = true; m.push(null); }
      } else {
        m.complete = true;
        for (const c of body.chunks) m.push(c);
        m.push(null);
      }
      r.rawHeaders = fields;
      r.req = m;
      next(r);
    }, (e: Error) => {
      r.conn.log.error(`writing the request body to "${s.bodyTempPath}" failed: ${e.message}`);
      r.forceClose = true;
      r.res.sendError(500);
    });
  });
}
