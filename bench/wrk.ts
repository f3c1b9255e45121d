/**
 * Runs wrk against one URL and parses its report: requests per second,
 * the latency distribution (`--latency`), transfer rate and errors.
 */
import { run, which } from './proc.ts';

/** How to drive the load: wrk's -t, -c, -d (seconds), pinned to `cpus` when given. */
export interface Load {
  threads: number;
  connections: number;
  seconds: number;
  cpus?: string;
}

/** What one wrk run measured. Latencies are in milliseconds, transfer in bytes per second. */
export interface WrkResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  transferPerSec: number;
  /** Responses other than 2xx or 3xx. */
  non2xx: number;
  /** Socket errors: connect, read, write, timeout. */
  socketErrors: number;
  /** CPU time the server (its whole process tree) spent per request during the run, µs (when measured). */
  cpuPerRequest?: number;
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

function time(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  if (!m) throw new Error(`unreadable wrk latency "${text}"`);
  return Number(m[1]) * TIME_UNITS[m[2]];
}

/** Parse wrk's text report (as printed with `--latency`). Throws when it has no Requests/sec line. */
export function parseWrk(out: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  if (!rps) throw new Error(`wrk printed no result: ${out.trim().split('\n').pop() ?? ''}`);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? time(m[1]) : NaN;
  };
  const transfer = /^Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)/m.exec(out);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    rps: Number(rps[1]),
    p50: pct('50'),
    p99: pct('99'),
    transferPerSec: transfer ? Number(transfer[1]) * SIZE_UNITS[transfer[2]] : NaN,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

/**
 * Drive `url` with wrk for `load.seconds` and parse the report. The run is
 * killed if it outlives its duration by 30 s.
 */
export async function wrk(url: string, load: Load): Promise<WrkResult> {
  if (!which('wrk')) throw new Error('wrk is not installed');
  const args = [`-t${load.threads}`, `-c${load.connections}`, `-d${load.seconds}s`, '--latency', '--timeout', '5s', url];
  const [cmd, argv] = load.cpus ? ['taskset', ['-c', load.cpus, 'wrk', ...args]] : ['wrk', args];
  const r = await run(cmd, argv, (load.seconds + 30) * 1000);
  if (r.status !== 0) throw new Error(`wrk failed (${r.status ?? 'killed'}): ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}`);
  const result = parseWrk(r.stdout);
  if (result.requests === 0) throw new Error(`no request was answered (${result.socketErrors} socket errors)`);
  return result;
}
