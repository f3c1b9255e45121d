/**
 * spawnApp (main's side of AppHost.spawn) with real programs: the systemd
 * socket convention, readiness, exec failures, no PATH search.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { spawnApp } from '../../src/main/spawn.ts';
import { NODE_PRELOAD, withPreload } from '../../src/apps/launch.ts';
import { FIXTURES, PYTHON, recorder, runDir, waitFor, alive } from './helpers.ts';

function getJson(socketPath: string, path: string): Promise<any> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(parts).toString())));
    }).on('error', reject);
  });
}

const baseSpec = { app: 't', arguments: [] as string[], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, waitReady: false };

test('external program gets a listening socket as fd 3 with LISTEN_FDS and its own LISTEN_PID', async (t) => {
  const dir = runDir();
  const rec = recorder();
  t.after(() => dir.remove());
  const { child, pid, socket } = await spawnApp({
    ...baseSpec, executable: join(FIXTURES, 'python/listen_fds_server.py'), arguments: ['--flag'], cwd: FIXTURES,
  }, { runDir: dir.path, log: rec.log, output: (c) => { c.stdout?.resume(); c.stderr?.resume(); } });
  t.after(() => { child.kill('SIGKILL'); });
  assert.equal(child.pid, pid);
  assert.ok(existsSync(socket), 'socket path exists while the process runs');
  assert.ok(!existsSync(`${socket}.tmp`));
  const info = await getJson(socket, '/hello?x=1');
  assert.equal(info.pid, pid);
  assert.equal(info.listen_pid, String(pid));
  assert.equal(info.listen_fds, '1');
  assert.equal(info.path, '/hello?x=1');
  assert.equal(info.cwd, FIXTURES);
  assert.deepEqual(info.argv.slice(1), ['--flag']);
  child.kill('SIGTERM');
  await waitFor(() => !existsSync(socket), 5000, 'socket unlinked after exit');
});

test('waitReady resolves on the readiness byte; the Node preload serves an unmodified app on fd 3', async (t) => {
  const dir = runDir();
  const rec = recorder();
  t.after(() => dir.remove());
  const out: string[] = [];
  const { child, pid, socket } = await spawnApp({
    ...baseSpec,
    executable: process.execPath,
    arguments: ['http_app.cjs'],
    cwd: join(FIXTURES, 'node'),
    env: { ...baseSpec.env, NODE_OPTIONS: withPreload('--no-warnings'), GREETING: 'hi' },
    waitReady: true,
  }, { runDir: dir.path, log: rec.log, output: (c) => { c.stdout?.on('data', (d) => out.push(String(d))); c.stderr?.on('data', (d) => out.push(String(d))); } });
  t.after(() => { child.kill('SIGKILL'); });
  const info = await getJson(socket, '/pid');
  assert.equal(info.pid, pid);
  assert.deepEqual(info.address, { address: '127.0.0.1', family: 'IPv4', port: 8123 });
  // The preload cleaned up after itself: children of the app are not affected.
  assert.deepEqual(info.env, { NODE_OPTIONS: '--no-warnings', LISTEN_FDS: null, LISTEN_PID: null, JUNCTION_READY_FD: null, GREETING: 'hi' });
  await waitFor(() => out.join('').includes('listening on {"address":"127.0.0.1","family":"IPv4","port":8123}'), 5000, 'listen callback output');
  // SIGTERM without a handler of the app's own: clean exit, code 0.
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('a missing executable is an execve failure; a bare name is not searched in PATH', async (t) => {
  const dir = runDir();
  const rec = recorder();
  t.after(() => dir.remove());
  await assert.rejects(
    spawnApp({ ...baseSpec, executable: '/nonexistent/app' }, { runDir: dir.path, log: rec.log }),
    { message: 'execve(/nonexistent/app) failed (2: No such file or directory)' });
  // `python3` exists in PATH, but relative names resolve against the working directory only.
  await assert.rejects(
    spawnApp({ ...baseSpec, executable: 'python3', cwd: dir.path }, { runDir: dir.path, log: rec.log }),
    { message: `execve(${join(dir.path, 'python3')}) failed (2: No such file or directory)` });
  await assert.rejects(
    spawnApp({ ...baseSpec, executable: PYTHON, cwd: '/nonexistent' }, { runDir: dir.path, log: rec.log }),
    { message: 'chdir(/nonexistent) failed (2: No such file or directory)' });
});

test('a process exiting before it is ready rejects, and its exit and output are logged', async (t) => {
  const dir = runDir();
  const rec = recorder();
  t.after(() => dir.remove());
  const script = join(dir.path, 'fail.sh');
  writeFileSync(script, '#!/bin/sh\necho "last words" >&2\nexit 4\n');
  chmodSync(script, 0o755);
  const out: string[] = [];
  await assert.rejects(
    spawnApp({ ...baseSpec, app: 'broken', executable: script, waitReady: true },
      { runDir: dir.path, log: rec.log, output: (c) => c.stderr?.on('data', (d) => out.push(String(d))) }),
    { message: '"broken" application failed to start' });
  assert.match(rec.text(), /\[notice\] \d+#\d+ app process \d+ exited with code 4\n/);
  assert.equal(out.join(''), 'last words\n');
});

test('a process that closes its readiness pipe without reporting is ended and rejected', async (t) => {
  const dir = runDir();
  const rec = recorder();
  t.after(() => dir.remove());
  let pid = 0;
  await assert.rejects(
    spawnApp({ ...baseSpec, executable: PYTHON, arguments: ['-c', 'import os, time; os.close(int(os.environ["JUNCTION_READY_FD"])); time.sleep(60)'], waitReady: true },
      { runDir: dir.path, log: rec.log, output: (c) => { pid = c.pid!; c.stderr?.resume(); } }),
    { message: '"t" application failed to start' });
  assert.ok(pid > 0 && !alive(pid));
  assert.match(rec.text(), /app process \d+ exited on signal 9/);
});

test('the preload is quoted in NODE_OPTIONS when its path needs it', () => {
  assert.equal(withPreload(undefined), `--require ${NODE_PRELOAD}`);
  assert.equal(withPreload('  --max-old-space-size=64 '), `--max-old-space-size=64 --require ${NODE_PRELOAD}`);
});
