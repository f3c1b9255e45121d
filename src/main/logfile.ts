/**
 * The error log, owned by main. Children (controller, router, applications)
 * write to pipes that main forwards here line by line, so one reopen in main
 * (SIGUSR1) rotates the log for every process.
 */
import fs from 'node:fs';
import path from 'node:path';

export class LogFile {
  readonly path: string;
  #fd = -1;
  /** Also copy every line to this process's original stderr (foreground runs). */
  readonly #tee: boolean;

  constructor(file: string, tee: boolean) {
    this.path = file;
    this.#tee = tee;
  }

  /** Open (or reopen after rotation) the file: append, create with 0600. Throws on failure. */
  open(): void {
    fs.mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o755 });
    const fd = fs.openSync(this.path, 'a', 0o600);
    const old = this.#fd;
    this.#fd = fd;
    if (old >= 0) fs.closeSync(old);
  }

  write(text: string | Buffer): void {
    const data = typeof text === 'string' ? Buffer.from(text) : text;
    if (this.#fd >= 0) {
      try { fs.writeSync(this.#fd, data); } catch { /* a full disk must not stop the server */ }
    }
    if (this.#tee) {
      try { fs.writeSync(2, data); } catch { /* stderr gone */ }
    }
  }

  /**
   * A writer for one source stream that only writes whole lines, so output of
   * different processes never interleaves inside a line. Returns [push, flush].
   */
  lineWriter(): [(chunk: Buffer) => void, () => void] {
    let rest: Buffer | null = null;
    const push = (chunk: Buffer) => {
      const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
      const nl = buf.lastIndexOf(10);
      if (nl < 0) { rest = buf.length > 65536 ? (this.write(buf), null) : buf; return; }
      this.write(buf.subarray(0, nl + 1));
      rest = nl + 1 < buf.length ? Buffer.from(buf.subarray(nl + 1)) : null;
    };
    const flush = () => { if (rest) { this.write(Buffer.concat([rest, Buffer.from('\n')])); rest = null; } };
    return [push, flush];
  }

  close(): void {
    if (this.#fd >= 0) fs.closeSync(this.#fd);
    this.#fd = -1;
  }
}
