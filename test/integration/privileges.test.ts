/**
 * Started as root with `--user nobody` (Unit's default), the routers serve as
 * that user: a `share` reads files with nobody's rights (a file only root can
 * read is a 403, as in Unit), while access logs are still opened with root's
 * rights (as Unit's main opens them) and applications, run as nobody too, are
 * reached on both request paths. Needs root: as any other user there is no
 * identity to switch from.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FIXTURES, Junction, freePort, get, waitFor } from './harness.ts';
import { nodeApp } from './apps-helpers.ts';

const ROOT = process.getuid?.() === 0;
const NOBODY = ROOT ? Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim()) : -1;

/** The effective uid of a process (second field of `Uid:` in /proc/PID/status). */
function effectiveUid(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
  return Number(line.split(/\s+/)[2]);
}

describe('routers run as --user when started as root', { skip: ROOT ? false : 'needs root' }, () => {
  let j: Junction;
  let files: string;
  let logs: string;
  let port: number;
  let direct: number;
  let routed: number;

  before(async () => {
    // Parents the unprivileged routers must traverse: the run directory lives under --tmpdir.
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-priv-'));
    fs.chmodSync(base, 0o755);
    files = path.join(base, 'files');
    fs.mkdirSync(files, { mode: 0o755 });
    fs.writeFileSync(path.join(files, 'public.txt'), 'for everyone\n', { mode: 0o644 });
    fs.writeFileSync(path.join(files, 'secret.txt'), 'root only\n', { mode: 0o600 });
    logs = path.join(base, 'logs');
    fs.mkdirSync(logs, { mode: 0o700 });
    const tmp = path.join(base, 'tmp');
    fs.mkdirSync(tmp, { mode: 0o755 });
    j = await Junction.start({ dir: base, args: ['--user', 'nobody', '--tmpdir', tmp] });
    [port, direct, routed] = [await freePort(), await freePort(), await freePort()];
    await j.configure({
      listeners: {
        [`127.0.0.1:${port}`]: { pass: 'routes/files' },
        [`127.0.0.1:${direct}`]: { pass: 'applications/hello' },
        [`127.0.0.1:${routed}`]: { pass: 'routes/app' },
      },
      routes: {
        files: [{ action: { share: `${files}$uri` } }],
        app: [
          { match: { headers: { 'X-App': 'wsgi' } }, action: { pass: 'applications/wsgi' } },
          { match: { uri: '/pid.php' }, action: { pass: 'applications/php' } },
          { action: { pass: 'applications/hello' } },
        ],
      },
      applications: {
        hello: nodeApp('http_app.cjs', { processes: 1 }),
        wsgi: { type: 'python', path: path.join(FIXTURES, 'python'), module: 'wsgi_echo' },
        php: { type: 'php', root: path.join(FIXTURES, 'php', 'www') },
      },
      settings: { listen_threads: 2 },
      access_log: path.join(logs, 'access.log'),
    });
  });
  after(async () => { await j?.cleanup(); });

  test('every router process has nobody as its effective user', async () => {
    const routers = await waitFor(() => { const p = j.pidsOf('junction: router'); return p.length === 2 ? p : null; }, 'two routers');
    for (const pid of routers) assert.equal(effectiveUid(pid), NOBODY, `router ${pid}`);
  });

  test('a share serves what nobody can read and answers 403 for a file only root can read', async () => {
    const pub = await get(port, '/public.txt');
    assert.equal(pub.status, 200);
    assert.equal(pub.body, 'for everyone\n');
    const secret = await get(port, '/secret.txt');
    assert.equal(secret.status, 403);
    assert.doesNotMatch(secret.body, /root only/);
  });

  test('the access log, in a directory only root may write, is written', async () => {
    await get(port, '/public.txt?logged');
    const file = path.join(logs, 'access.log');
    const text = await waitFor(() => { try { const t = fs.readFileSync(file, 'utf8'); return t.includes('/public.txt?logged') ? t : null; } catch { return null; } }, 'access log line');
    assert.match(text, /"GET \/public.txt\?logged HTTP\/1.1" 200 13 /);
    const st = fs.statSync(file);
    assert.equal(st.uid, 0);
    assert.equal(st.mode & 0o777, 0o600);
  });

  test('after SIGUSR1 the access log is opened again, as root, at its path', async () => {
    const file = path.join(logs, 'access.log');
    await waitFor(() => fs.existsSync(file), 'access log');
    fs.renameSync(file, `${file}.1`);
    j.proc!.kill('SIGUSR1');
    await waitFor(() => fs.existsSync(file), 'reopened access log');
    await get(port, '/public.txt?after-rotation');
    await waitFor(() => fs.readFileSync(file, 'utf8').includes('after-rotation'), 'line in the new file');
    assert.equal(fs.statSync(file).uid, 0);
  });

  test('the application runs as nobody and is reached on both paths', async () => {
    for (const p of [direct, routed]) {
      const r = await get(p, '/pid');
      assert.equal(r.status, 200, `port ${p}: ${r.body}`);
      const pid = JSON.parse(r.body).pid as number;
      assert.equal(effectiveUid(pid), NOBODY);
    }
  });

  test('Python and PHP applications run as nobody and answer', async () => {
    const py = await get(routed, '/pid', { 'X-App': 'wsgi' });
    assert.equal(py.status, 200, py.body);
    assert.equal(effectiveUid(Number(py.body)), NOBODY);
    const php = await get(routed, '/pid.php');
    assert.equal(php.status, 200, php.body);
    assert.equal(effectiveUid(Number(php.body)), NOBODY);
  });
});

describe('started by an unprivileged user, as Unit', { skip: ROOT ? false : 'needs root to start it as nobody' }, () => {
  let j: Junction;
  let port: number;

  before(async () => {
    const nogroup = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim());
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-unpriv-'));
    fs.chmodSync(base, 0o755);
    j = await Junction.start({ dir: base, as: { uid: NOBODY, gid: nogroup } });
    port = await freePort();
  });
  after(async () => { await j?.cleanup(); });

  const app = (extra: Record<string, unknown>) => ({
    listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/wsgi' } },
    applications: { wsgi: { type: 'python', path: path.join(FIXTURES, 'python'), module: 'wsgi_echo', ...extra } },
  });

  test('the start is logged with Unit\'s warning', async () => {
    await waitFor(() => j.logText().includes('[warn]') ? true : null, 'warning');
    assert.match(j.logText(), /\[warn\] .*Unit is running unprivileged, then it cannot use arbitrary user and group\./);
  });

  test('an application with another user or group is refused (500), the running configuration stays', async () => {
    await j.configure(app({}));
    assert.equal((await get(port, '/pid')).status, 200);
    for (const [extra, message] of [
      [{ user: 'root' }, 'cannot set user "root" for app "wsgi": missing capabilities'],
      [{ group: 'root' }, 'cannot set group "root" for app "wsgi": missing capabilities'],
    ] as const) {
      const r = await j.api('PUT', '/config', app(extra));
      assert.equal(r.status, 500, r.body);
      assert.ok(j.logText().includes(message), j.logText());
      assert.equal((await get(port, '/pid')).status, 200);
    }
    // Its own user is fine.
    await j.configure(app({ user: 'nobody' }));
    assert.equal((await get(port, '/pid')).status, 200);
  });
});
