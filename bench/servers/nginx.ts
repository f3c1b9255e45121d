/**
 * nginx as a reference: one master and one worker (or more), its own configuration and
 * temp paths in the run's directory, access log off (as Junction's default).
 * The server block is the scenario's: `return 200`, static files, proxy_pass
 * with upstream keep-alive, or FastCGI to php-fpm.
 */
import fs from 'node:fs';
import path from 'node:path';
import { freePort, start, stop, which } from '../proc.ts';
import type { RunEnv, Running } from '../types.ts';
import { waitForHttp } from './wait.ts';

/** `location` blocks (and optional http-level lines) that make one nginx scenario. */
export interface NginxSite {
  /** Lines at the http level, before the server block (e.g. an upstream). */
  http?: string;
  /** Lines inside the server block. */
  server: string;
}

/** `return 200` with an empty body. */
export function returnSite(status = 200, body?: string): NginxSite {
  return { server: `location / { return ${status}${body === undefined ? '' : ` ${JSON.stringify(body)}`}; }` };
}

/** Static files from `root`, with sendfile. */
export function staticSite(root: string): NginxSite {
  return { server: `root ${root};\nlocation / { }` };
}

/** Reverse proxy to 127.0.0.1:`port` with HTTP/1.1 keep-alive connections to the upstream. */
export function proxySite(port: number): NginxSite {
  return {
    http: `upstream backend { server 127.0.0.1:${port}; keepalive 32; }`,
    server: 'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }',
  };
}

/**
 * Every request to `root/script` through php-fpm on the Unix socket `socket`,
 * as Debian's nginx snippets do it: a new FastCGI connection per request.
 *
 * Not with FastCGI keep-alive (`keepalive`, `fastcgi_keep_conn on`): a
 * php-fpm child serves only its kept connection, so under more concurrent
 * clients than children the connections beyond them wait in the socket's
 * backlog until they time out (504); limiting them with `max_conns` makes
 * nginx answer 502 instead, since open-source nginx cannot queue requests for
 * a busy upstream (`queue` is NGINX Plus).
 */
export function phpSite(root: string, script: string, socket: string): NginxSite {
  return {
    server: `root ${root};\nlocation / {\n  include /etc/nginx/fastcgi_params;\n` +
      `  fastcgi_param SCRIPT_FILENAME $document_root/${script};\n  fastcgi_param SCRIPT_NAME /${script};\n` +
      `  fastcgi_pass unix:${socket};\n}`,
  };
}

function config(dir: string, port: number, site: NginxSite, workers: number): string {
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${path.join(dir, `${t}_temp`)};`).join('\n');
  return `${user}daemon off;
master_process on;
worker_processes ${workers};
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
${temp}
  ${site.http ?? ''}
  server {
    listen 127.0.0.1:${port};
    ${site.server.split('\n').join('\n    ')}
  }
}
`;
}

/** Start nginx with `site` and `workers` worker processes on a free loopback port; `name` names its directory. */
export async function startNginx(env: RunEnv, name: string, site: NginxSite, workers = 1): Promise<Running> {
  const bin = which('nginx');
  if (!bin) throw new Error('nginx is not installed');
  const dir = fs.mkdtempSync(path.join(env.tmp, `nginx-${name}-`));
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, config(dir, port, site, workers));
  const p = start(`nginx (${name})`, bin, ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')], { cpus: env.serverCpus });
  try {
    await waitForHttp(port, p);
  } catch (e) { await stop(p); throw e; }
  return { port, pid: p.pid, stop: () => stop(p) };
}
