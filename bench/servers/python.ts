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

/** uvicorn's event loop and HTTP implementation: the compiled ones, or the pure-Python ones. */
export type UvicornFlavour = 'uvloop+httptools' | 'asyncio+h11';

/**
 * uvicorn, one process, serving bench/apps/python/asgi.py's `app`, with
 * uvloop and httptools (what `pip install uvicorn[standard]` brings; fails,
 * hence n/a, when they are not installed) or with asyncio and h11 (what
 * Debian's uvicorn runs without its recommended packages).
 */
export function startUvicorn(env: RunEnv, flavour: UvicornFlavour = 'uvloop+httptools'): Promise<Running> {
  const [loop, http] = flavour === 'uvloop+httptools' ? ['uvloop', 'httptools'] : ['asyncio', 'h11'];
  return startPython(env, 'uvicorn', (port) => ['--host', '127.0.0.1', '--port', String(port), '--no-access-log',
    '--log-level', 'warning', '--loop', loop, '--http', http, 'asgi:app']);
}
