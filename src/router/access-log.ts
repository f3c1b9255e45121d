/**
 * The access log (spec/router.md §7): one line per finished request, in
 * Unit's default format or a configured template / JSON object, optionally
 * conditional (`if`). The file is opened append-only (0600) when a
 * configuration is applied and reopened on SIGUSR1 (`reopenLogs`).
 */
import fs from 'node:fs';
import { asPrivileged } from '../runtime/privileges.ts';
import type { Request } from './request.ts';
import { compileTemplate, compileCondition, timeLocal, type Template, type Condition } from './variables.ts';

/** An open log file; lines are written in order through one stream. */
export class AccessLogFile {
  readonly path: string;
  private stream: fs.WriteStream;
  private closed = false;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.stream = AccessLogFile.streamFor(fd);
  }

  private static streamFor(fd: number): fs.WriteStream {
    // The stream owns the descriptor and closes it when ended.
    const s = fs.createWriteStream('', { fd, autoClose: true });
    s.on('error', () => { /* a full disk must not take the router down */ });
    return s;
  }

  /**
   * Open `path` for appending (created 0600), with root's rights when the
   * router runs unprivileged (runtime/privileges.ts): as Unit, where main
   * opens access logs for the router.
   * @throws Error with the system message when it cannot be opened (apply fails → 500).
   */
  static async open(path: string): Promise<AccessLogFile> {
    return new AccessLogFile(path, openForAppend(path));
  }

  write(line: string): void {
    if (!this.closed) this.stream.write(line, 'latin1');
  }

  /** Reopen the same path (log rotation); the old descriptor is closed after pending lines. */
  async reopen(): Promise<void> {
    if (this.closed) return;
    const fd = openForAppend(this.path);
    const old = this.stream;
    this.stream = AccessLogFile.streamFor(fd);
    old.end();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.end();
  }
}

/** Open `path` append-only, creating it 0600; privileged when the process dropped root. */
function openForAppend(path: string): number {
  return asPrivileged(() => fs.openSync(path, 'a', 0o600));
}

/** Escape a value for a JSON string (without the quotes). */
function jsonEscape(v: string): string {
  return JSON.stringify(v).slice(1, -1);
}

type Format =
  | { kind: 'default' }
  | { kind: 'template'; template: Template }
  | { kind: 'json'; names: string[]; values: Template[]; js: boolean };

/** Unit's default line (§7.1), without the template machinery. */
function defaultLine(r: Request): string {
  const ref = r.lastHeader('referer');
  const ua = r.lastHeader('user-agent');
  return `${r.remoteAddr} - - [${timeLocal()}] "${r.requestLine ?? '-'}" ` +
    `${String(r.res.status).padStart(3, '0')} ${r.bytesSent} "${ref ?? '-'}" "${ua ?? '-'}"\n`;
}

/** A compiled `access_log` setting. */
export class AccessLog {
  readonly file: AccessLogFile;
  private readonly format: Format;
  private readonly condition: Condition | null;

  constructor(file: AccessLogFile, format: Format, condition: Condition | null) {
    this.file = file;
    this.format = format;
    this.condition = condition;
  }

  /**
   * Write the line for the finished request `r` (unless `if` says no). Errors
   * drop the line; so does a JS template that failed while serving `r` (§6.3).
   */
  log(r: Request): void {
    if (r.jsFailed) return;
    try {
      if (this.condition !== null && !this.condition.test(r)) return;
      const f = this.format;
      let line: string;
      if (f.kind === 'default') {
        line = defaultLine(r);
      } else if (f.kind === 'template') {
        line = f.template.expandLog(r) + '\n';
      } else if (f.js) {
        const o: Record<string, string> = {};
        for (let i = 0; i < f.names.length; i++) o[f.names[i]] = f.values[i].expandLog(r);
        line = JSON.stringify(o) + '\n';
      } else {
        line = '{';
        for (let i = 0; i < f.names.length; i++) {
          line += (i ? ',"' : '"') + f.names[i] + '":"' + f.values[i].expandLog(r, jsonEscape) + '"';
        }
        line += '}\n';
      }
      this.file.write(line);
    } catch (e) {
      r.conn.log.error(`access log: ${(e as Error).message}`);
    }
  }
}

/** Path of an `access_log` value (string or object form). */
export function accessLogPath(value: unknown): string {
  return typeof value === 'string' ? value : String((value as Record<string, unknown>).path ?? '');
}

/**
 * Compile `access_log` around an already opened file.
 * @throws Error for an invalid template.
 */
export function compileAccessLog(value: unknown, file: AccessLogFile): AccessLog {
  if (typeof value === 'string') return new AccessLog(file, { kind: 'default' }, null);
  const o = value as Record<string, unknown>;
  const cond = typeof o.if === 'string' ? compileCondition(o.if, 'if') : null;
  let format: Format = { kind: 'default' };
  if (typeof o.format === 'string') {
    format = { kind: 'template', template: compileTemplate(o.format, 'format') };
  } else if (o.format !== null && typeof o.format === 'object') {
    const fo = o.format as Record<string, string>;
    const names = Object.keys(fo);
    const values = names.map((n) => compileTemplate(fo[n], 'format'));
    format = { kind: 'json', names: names.map(jsonEscape), values, js: names.some((n) => fo[n].startsWith('`')) };
  }
  return new AccessLog(file, format, cond);
}
