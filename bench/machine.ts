/**
 * What the numbers were measured on: CPUs, memory, kernel, and the versions
 * of Node and of every reference server, printed above the tables.
 */
import fs from 'node:fs';
import os from 'node:os';
import { phpFpmBinary } from './install.ts';
import { versionOf, which } from './proc.ts';

/** Name → description of the machine and the software versions. */
export function describeMachine(): Record<string, string> {
  let cpu = '';
  try { cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? ''; } catch { /* not Linux */ }
  const v = (bin: string, args: string[]) => (bin ? versionOf(bin, args) : '') || 'not installed';
  return {
    cpus: `${os.availableParallelism()} × ${cpu || os.cpus()[0]?.model || 'unknown CPU'}`,
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    'load avg': `${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (1, 5, 15 min, before the run)`,
    node: process.version,
    wrk: v(which('wrk'), ['-v']).replace(/ \[.*$/, ''),
    nginx: v(which('nginx'), ['-v']).replace(/^nginx version: /, ''),
    python3: v(which('/usr/bin/python3') || which('python3'), ['--version']),
    gunicorn: v(which('gunicorn'), ['--version']),
    uvicorn: v(which('uvicorn'), ['--version']),
    'php-fpm': v(phpFpmBinary(), ['-v']),
    'php-cgi': v(which('php-cgi'), ['-v']),
  };
}
