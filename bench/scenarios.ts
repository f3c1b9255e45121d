/**
 * The load scenarios: for each, the Junction configuration that serves it and
 * the reference servers that serve the same thing, answered identically.
 */
import path from 'node:path';
import { startNginx, phpSite, proxySite, returnSite, staticSite } from './servers/nginx.ts';
import { startNodeApp } from './servers/node.ts';
import { startPhpFpm } from './servers/php.ts';
import { startGunicorn, startUvicorn } from './servers/python.ts';
import type { RunEnv, Running } from './types.ts';

/** What every server must answer to GET `path` before it is measured. */
export interface Expect {
  status: number;
  body?: string;
  length?: number;
}

/** Resources a scenario starts once for all its servers (e.g. the proxy's backend). */
export interface Shared {
  backendPort?: number;
}

/** A server other than Junction that serves the scenario. */
export interface Reference {
  server: string;
  start(env: RunEnv, shared: Shared): Promise<Running>;
}

/** One load scenario. */
export interface LoadScenario {
  id: string;
  /** A name that selects this scenario and its siblings at once (`--scenarios php` runs php-1 and php-2). */
  group?: string;
  title: string;
  path: string;
  expect: Expect;
  /** Starts what the servers share; returns the shared values and how to stop them. */
  setup?(env: RunEnv): Promise<{ shared: Shared; teardown(): Promise<void> }>;
  /** The Junction configuration (PUT /config) serving it on 127.0.0.1:`port`. */
  junction(env: RunEnv, port: number, shared: Shared): object;
  references: Reference[];
  /**
   * Run without CPU pinning: Junction, the references and wrk may all use
   * every CPU, as a user runs them on one machine (for servers of several
   * processes measured against single-process ones).
   */
  unpinned?: boolean;
}

const HELLO = 'Hello, World!\n';
const KIB = 1024;

/** A configuration with one listener passing to `pass`. */
function listen(port: number, pass: string, rest: object = {}): object {
  return { listeners: { [`127.0.0.1:${port}`]: { pass } }, ...rest };
}

/** One listener whose single route takes `action`. */
function route(port: number, action: object): object {
  return listen(port, 'routes', { routes: [{ action }] });
}

/** One listener passing to application `app`. */
function app(port: number, application: object): object {
  return listen(port, 'applications/app', { applications: { app: application } });
}

/** Router processes (Junction) and workers (nginx) of the multi-process `return` scenario. */
const ROUTERS = 2;

const nodeReference: Reference = { server: 'node:http (same Node)', start: (env) => startNodeApp(env) };

/** Every load scenario, in the order they run and are printed. */
export const SCENARIOS: LoadScenario[] = [
  {
    id: 'return',
    title: 'return 200',
    path: '/',
    expect: { status: 200 },
    junction: (_env, port) => route(port, { return: 200 }),
    references: [
      nodeReference,
      { server: 'nginx return 200', start: (env) => startNginx(env, 'return', returnSite(200)) },
    ],
  },
  {
    id: 'return-mp',
    title: `return 200, ${ROUTERS} router processes`,
    path: '/',
    expect: { status: 200 },
    junction: (_env, port) => ({ ...route(port, { return: 200 }), settings: { listen_threads: ROUTERS } }),
    references: [
      nodeReference,
      { server: `nginx return 200 (${ROUTERS} workers)`, start: (env) => startNginx(env, 'return-mp', returnSite(200), ROUTERS) },
    ],
    unpinned: true,
  },
  {
    id: 'static-1k',
    title: 'static 1 KiB',
    path: '/1k.bin',
    expect: { status: 200, length: KIB },
    junction: (env, port) => route(port, { share: `${env.filesDir}$uri` }),
    references: [{ server: 'nginx static', start: (env) => startNginx(env, 'static', staticSite(env.filesDir)) }],
  },
  {
    id: 'static-1m',
    title: 'static 1 MiB',
    path: '/1m.bin',
    expect: { status: 200, length: KIB * KIB },
    junction: (env, port) => route(port, { share: `${env.filesDir}$uri` }),
    references: [{ server: 'nginx static', start: (env) => startNginx(env, 'static', staticSite(env.filesDir)) }],
  },
  {
    id: 'proxy',
    title: 'proxy to nginx',
    path: '/',
    expect: { status: 200, body: HELLO },
    async setup(env) {
      const backend = await startNginx(env, 'backend', returnSite(200, HELLO));
      return { shared: { backendPort: backend.port }, teardown: () => backend.stop() };
    },
    junction: (_env, port, shared) => route(port, { proxy: `http://127.0.0.1:${shared.backendPort}` }),
    references: [{
      server: 'nginx proxy_pass (keepalive)',
      start: (env, shared) => startNginx(env, 'proxy', proxySite(shared.backendPort!)),
    }],
  },
  {
    id: 'python-wsgi',
    title: 'Python WSGI hello',
    path: '/',
    expect: { status: 200, body: HELLO },
    junction: (env, port) => app(port, {
      type: 'python', path: path.join(env.appsDir, 'python'), module: 'wsgi', callable: 'application', processes: 1,
    }),
    references: [{ server: 'gunicorn (1 sync worker)', start: (env) => startGunicorn(env) }],
  },
  {
    id: 'python-asgi',
    title: 'Python ASGI hello',
    path: '/',
    expect: { status: 200, body: HELLO },
    junction: (env, port) => app(port, {
      type: 'python', path: path.join(env.appsDir, 'python'), module: 'asgi', callable: 'app', protocol: 'asgi', processes: 1,
    }),
    references: [
      { server: 'uvicorn, uvloop + httptools (1 process)', start: (env) => startUvicorn(env, 'uvloop+httptools') },
      { server: 'uvicorn, asyncio + h11 (1 process)', start: (env) => startUvicorn(env, 'asyncio+h11') },
    ],
  },
  {
    id: 'node',
    title: 'Node.js hello',
    path: '/',
    expect: { status: 200, body: HELLO },
    junction: (env, port) => app(port, {
      type: 'external', working_directory: path.join(env.appsDir, 'node'), executable: process.execPath, arguments: ['app.js'],
      processes: 1,
    }),
    references: [{ server: 'node app.js', start: (env) => startNodeApp(env) }],
  },
  {
    id: 'express',
    title: 'Node.js Express hello',
    path: '/',
    expect: { status: 200, body: HELLO },
    junction: (env, port) => app(port, {
      type: 'external', working_directory: path.join(env.appsDir, 'node'), executable: process.execPath, arguments: ['express.js'],
      processes: 1,
    }),
    references: [{ server: 'node express.js', start: (env) => startNodeApp(env, 'express.js') }],
  },
  phpScenario(1),
  phpScenario(2),
];

/**
 * PHP hello world with `n` PHP processes on each side: Junction's `php` type
 * (`processes: n` php-cgi processes, one kept FastCGI connection each) and
 * nginx in front of php-fpm with `n` static children.
 */
function phpScenario(n: number): LoadScenario {
  const plural = n === 1 ? '' : 'es';
  return {
    id: `php-${n}`,
    group: 'php',
    title: `PHP hello, ${n} process${plural}`,
    path: '/',
    expect: { status: 200, body: HELLO },
    junction: (env, port) => app(port, {
      type: 'php', root: path.join(env.appsDir, 'php'), script: 'index.php', processes: n,
    }),
    references: [{
      server: `nginx + php-fpm (${n} child${n === 1 ? '' : 'ren'})`,
      async start(env) {
        const fpm = await startPhpFpm(env, n);
        try {
          const nginx = await startNginx(env, 'php', phpSite(path.join(env.appsDir, 'php'), 'index.php', fpm.socket));
          return { port: nginx.port, pid: nginx.pid, also: [fpm.pid], stop: async () => { await nginx.stop(); await fpm.stop(); } };
        } catch (e) { await fpm.stop(); throw e; }
      },
    }],
  };
}
