/**
 * Error-log lines in Unit's format:
 *   `YYYY/MM/DD HH:MM:SS [level] <pid>#<tid> message`   (local time)
 * Every Junction process writes its lines to its stderr; main forwards the
 * children's stderr into the log file, so SIGUSR1 rotation only touches main.
 * Source: Unit 1.35 error log (spec/applications.md §7).
 */

export type LogLevel = 'alert' | 'error' | 'warn' | 'notice' | 'info' | 'debug';

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Local time as `YYYY/MM/DD HH:MM:SS`. */
export function logTime(d = new Date()): string {
  return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** One formatted line, with its trailing LF. */
export function formatLogLine(level: LogLevel, message: string, pid = process.pid): string {
  return `${logTime()} [${level}] ${pid}#${pid} ${message}\n`;
}

export interface Logger {
  alert(message: string): void;
  error(message: string): void;
  warn(message: string): void;
  notice(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/** A logger writing formatted lines through `write` (default: this process's stderr). */
export function createLogger(write: (line: string) => void = (l) => { process.stderr.write(l); }): Logger {
  const at = (level: LogLevel) => (message: string) => write(formatLogLine(level, message));
  return {
    alert: at('alert'), error: at('error'), warn: at('warn'),
    notice: at('notice'), info: at('info'),
    debug: process.env.JUNCTION_DEBUG ? at('debug') : () => {},
  };
}

/** The default logger of the current process. */
export const log: Logger = createLogger();
