/**
 * A Node.js app run directly with the same Node that runs the harness:
 * the reference for Node apps and the floor cost of any Node HTTP server.
 */
import path from 'node:path';
import { freePort, start, stop } from '../proc.ts';
import type { RunEnv, Running } from '../types.ts';
import { waitForHttp } from './wait.ts';

/** Start `node bench/apps/node/<file>` listening on 127.0.0.1 at a free port (PORT, HOST env). */
export async function startNodeApp(env: RunEnv, file = 'app.js'): Promise<Running> {
  const port = await freePort();
  const dir = path.join(env.appsDir, 'node');
  const p = start('node', process.execPath, [file], {
    cwd: dir,
    cpus: env.serverCpus,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', NODE_OPTIONS: '' },
  });
  try {
    await waitForHttp(port, p);
  } catch (e) { await stop(p); throw e; }
  return { port, pid: p.pid, stop: () => stop(p) };
}
