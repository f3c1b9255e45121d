/**
 * The Python servers a user would pick instead of Junction, one worker each:
 * gunicorn (sync worker) for WSGI and uvicorn for ASGI, both from Debian.
 */
import path from 'node:path';
import { freePort, start, stop, which } from '../proc.ts';
import type { RunEnv, Running } from '../types.ts';
import { waitForHttp } from './wait.ts';

async function startPython(env: RunEnv, name: string, args: (port: number) => string[]): Promise<Running> {
  const bin = which(name);
  if (!bin) throw new Error(`${name} is not installed`);
  const port = await freePort();
  const p = start(name, bin, args(port), { cwd: path.join(env.appsDir, 'python'), cpus: env.serverCpus });
  try {
    await waitForHttp(port, p);
  } catch (e) { await stop(p); throw e; }
  return { port, pid: p.pid, stop: () => stop(p) };
}

/** gunicorn, 1 sync worker, serving bench/apps/python/wsgi.py's `application`. */
export function startGunicorn(env: RunEnv): Promise<Running> {
  return startPython(env, 'gunicorn', (port) => ['--workers', '1', '--worker-class', 'sync', '--bind', `127.0.0.1:${port}`,
    '--log-level', 'warning', 'wsgi:application']);
}

/** uvicorn, one process, serving bench/apps/python/asgi.py's `app` (uvloop and httptools when installed). */
export function startUvicorn(env: RunEnv): Promise<Running> {
  return startPython(env, 'uvicorn', (port) => ['--host', '127.0.0.1', '--port', String(port), '--no-access-log',
    '--log-level', 'warning', 'asgi:app']);
}
