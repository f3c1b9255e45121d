/**
 * Installs the load generator and the reference servers from Debian packages
 * when they are missing: `apt-get update` once, then `apt-get install -y` of
 * only what is absent. Without root or apt-get it says what is missing and
 * carries on; the scenarios that need it are then reported as n/a.
 */
import fs from 'node:fs';
import { run, which } from './proc.ts';

/** One thing the benchmark needs, and the Debian packages that provide it (first available wins). */
interface Need {
  what: string;
  present: () => boolean;
  packages: string[];
}

/** The php-fpm binary (Debian names it php-fpmX.Y), or ''. */
export function phpFpmBinary(): string {
  for (const dir of ['/usr/sbin', '/usr/local/sbin']) {
    let names: string[] = [];
    try { names = fs.readdirSync(dir); } catch { continue; }
    const fpm = names.filter((n) => /^php-fpm[\d.]*$/.test(n)).sort().pop();
    if (fpm) return `${dir}/${fpm}`;
  }
  return '';
}

function dpkgInstalled(pkg: string): Promise<boolean> {
  return run('dpkg-query', ['-W', '-f=${Status}', pkg], 10_000)
    .then((r) => r.status === 0 && r.stdout.includes('install ok installed'));
}

const NEEDS: Need[] = [
  { what: 'wrk', present: () => !!which('wrk'), packages: ['wrk'] },
  { what: 'taskset', present: () => !!which('taskset'), packages: ['util-linux'] },
  { what: 'nginx', present: () => !!which('nginx'), packages: ['nginx-light', 'nginx'] },
  { what: 'gunicorn', present: () => !!which('gunicorn'), packages: ['gunicorn', 'python3-gunicorn'] },
  { what: 'uvicorn', present: () => !!which('uvicorn'), packages: ['uvicorn', 'python3-uvicorn'] },
  { what: 'php-cgi', present: () => !!which('php-cgi'), packages: ['php-cgi'] },
  { what: 'php-fpm', present: () => !!phpFpmBinary(), packages: ['php-fpm'] },
];

/** uvicorn's fast event loop and HTTP parser, as `pip install uvicorn[standard]` would bring it. */
const EXTRAS = ['python3-uvloop', 'python3-httptools'];

async function hasCandidate(pkg: string): Promise<boolean> {
  const r = await run('apt-cache', ['policy', pkg], 60_000);
  const c = /Candidate:\s*(\S+)/.exec(r.stdout)?.[1];
  return !!c && c !== '(none)';
}

/**
 * Make sure the tools are installed. Logs progress through `log`; never
 * throws — what cannot be installed is reported and left to the scenarios.
 */
export async function ensureInstalled(log: (line: string) => void): Promise<void> {
  const missing = NEEDS.filter((n) => !n.present());
  const extras: string[] = [];
  for (const pkg of EXTRAS) if (!(await dpkgInstalled(pkg))) extras.push(pkg);
  if (missing.length === 0 && extras.length === 0) return;
  const names = missing.map((n) => n.what).join(', ');
  if (!which('apt-get') || process.getuid?.() !== 0) {
    if (missing.length) log(`missing: ${names} (install them with apt-get as root; their scenarios are n/a)`);
    return;
  }
  log(`installing ${[...missing.map((n) => n.what), ...extras].join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = await run('apt-get', ['update'], 600_000, { env });
  if (update.status !== 0) log(`apt-get update failed: ${update.stderr.trim().split('\n').pop() ?? ''}`);
  const packages: string[] = [];
  for (const n of missing) {
    let chosen = '';
    for (const p of n.packages) if (await hasCandidate(p)) { chosen = p; break; }
    if (chosen) packages.push(chosen);
    else log(`no Debian package found for ${n.what} (tried ${n.packages.join(', ')})`);
  }
  for (const p of extras) if (await hasCandidate(p)) packages.push(p);
  if (packages.length === 0) return;
  const all = await run('apt-get', ['install', '-y', ...packages], 1_200_000, { env });
  if (all.status === 0) return;
  // One unavailable package must not keep the others out: retry one by one.
  for (const p of packages) {
    const one = await run('apt-get', ['install', '-y', p], 600_000, { env });
    if (one.status !== 0) log(`apt-get install ${p} failed: ${one.stderr.trim().split('\n').pop() ?? ''}`);
  }
}
