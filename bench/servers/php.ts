/**
 * php-fpm as a reference: N static children on a Unix socket, its own
 * configuration in the run's directory, the distribution's php.ini (opcache on).
 * nginx in front of it is started by the scenario.
 */
import fs from 'node:fs';
import path from 'node:path';
import { phpFpmBinary } from '../install.ts';
import { start, stop, waitFor } from '../proc.ts';
import type { RunEnv } from '../types.ts';

/** A running php-fpm pool listening on `socket`. */
export interface PhpFpm {
  socket: string;
  pid: number;
  stop(): Promise<void>;
}

/** Start php-fpm in the foreground with `children` static children; resolves once its socket exists. */
export async function startPhpFpm(env: RunEnv, children = 1): Promise<PhpFpm> {
  const bin = phpFpmBinary();
  if (!bin) throw new Error('php-fpm is not installed');
  const dir = fs.mkdtempSync(path.join(env.tmp, 'php-fpm-'));
  const socket = path.join(dir, 'php-fpm.sock');
  const conf = path.join(dir, 'php-fpm.conf');
  fs.writeFileSync(conf, `[global]
pid = ${path.join(dir, 'php-fpm.pid')}
error_log = ${path.join(dir, 'php-fpm.log')}
daemonize = no

[bench]
listen = ${socket}
pm = static
pm.max_children = ${children}
pm.max_requests = 0
`);
  const p = start('php-fpm', bin, ['--nodaemonize', '--allow-to-run-as-root', '--fpm-config', conf], { cpus: env.serverCpus });
  try {
    await waitFor(() => fs.existsSync(socket), 'php-fpm socket', 15_000, p);
  } catch (e) { await stop(p); throw e; }
  return { socket, pid: p.pid, stop: () => stop(p) };
}
