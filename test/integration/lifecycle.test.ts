/**
 * The daemon's life: flags, persistence across restarts, graceful exit,
 * replacement of killed processes, and log rotation on SIGUSR1.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, FIXTURES, Junction, freePort, get, waitFor } from './harness.ts';

const returnConfig = (port: number, code = 204) => ({
  listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
  routes: [{ action: { return: code } }],
  applications: {},
});

/** A listener passing straight to the Express fixture (an unmodified app calling app.listen(3000)). */
const expressConfig = (port: number) => ({
  listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/express' } },
  applications: {
    express: { type: 'external', working_directory: path.join(FIXTURES, 'express'), executable: process.execPath, arguments: ['app.js'] },
  },
});

describe('command line', () => {
  test('--version prints the Unit version it reproduces to stderr', () => {
    const r = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /^unit version: 1\.35\.0$/m);
    assert.equal(r.stdout, '');
  });

  test('--help lists the options with their defaults', () => {
    const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const o of ['--no-daemon', '--control', '--control-mode', '--pid', '--log', '--statedir', '--tmpdir', '--modulesdir', '--user', '--group']) {
      assert.ok(r.stdout.includes(o), o);
    }
  });

  test('an unknown option or a missing argument fails with unitd\'s message', () => {
    const a = spawnSync(process.execPath, [BIN, '--bogus'], { encoding: 'utf8' });
    assert.equal(a.status, 1);
    assert.match(a.stderr, /unknown option "--bogus", try "junction -h" for available options/);
    const b = spawnSync(process.execPath, [BIN, '--log'], { encoding: 'utf8' });
    assert.equal(b.status, 1);
    assert.match(b.stderr, /option "--log" requires filename/);
  });

  test('without --no-daemon it detaches, and the control socket answers when the command returns', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-daemon-'));
    const sock = path.join(dir, 'control.sock');
    const r = spawnSync(process.execPath, [BIN, '--control', `unix:${sock}`, '--statedir', path.join(dir, 'state'),
      '--log', path.join(dir, 'unit.log'), '--pid', path.join(dir, 'unit.pid'), '--tmpdir', dir], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const pid = Number(fs.readFileSync(path.join(dir, 'unit.pid'), 'utf8'));
    try {
      const { request } = await import('./harness.ts');
      const res = await request({ socketPath: sock, path: '/config' });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { listeners: {}, routes: [], applications: {} });
    } finally {
      process.kill(pid, 'SIGTERM');
      await waitFor(() => !fs.existsSync(sock), 'control socket removal');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('processes', () => {
  test('ps shows main, controller and router titles', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    assert.equal(j.pidsOf('junction: controller').length, 1);
    assert.equal(j.pidsOf('junction: router').length, 1);
    const main = fs.readFileSync(`/proc/${j.proc!.pid}/cmdline`, 'utf8');
    assert.match(main, /^junction: main v/);
    assert.match(j.logText(), /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[info\] \d+#\d+ controller started$/m);
    assert.match(j.logText(), /\[info\] \d+#\d+ router started$/m);
  });

  test('SIGQUIT exits gracefully; a restart on the same state directory serves the stored configuration', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    await j.configure(returnConfig(port, 418));
    assert.equal((await get(port, '/')).status, 418);
    assert.equal(await j.stop('SIGQUIT'), 0);
    assert.ok(!fs.existsSync(j.control), 'control socket removed');
    assert.ok(!fs.existsSync(j.pidFile), 'pid file removed');
    assert.equal(fs.readFileSync(path.join(j.statedir, 'version'), 'utf8'), '13500');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(j.statedir, 'conf.json'), 'utf8')), returnConfig(port, 418));
    await j.run();
    assert.deepEqual((await j.api('GET', '/config')).json, returnConfig(port, 418));
    assert.equal((await get(port, '/')).status, 418);
    const status = await j.api('GET', '/status');
    assert.equal(status.json.requests.total, 1);
  });

  test('a killed router comes back with the configuration and serves again', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    // One router process, so that nothing serves until the killed one is replaced.
    await j.configure({ ...returnConfig(port, 202), settings: { listen_threads: 1 } });
    const routers = j.pidsOf('junction: router');
    assert.equal(routers.length, 1);
    const [router] = routers;
    process.kill(router, 'SIGKILL');
    const t0 = Date.now();
    await waitFor(async () => (await get(port, '/').catch(() => ({ status: 0 }))).status === 202, 'router back', 5000);
    // How long it took is reported, not asserted: timings belong to bench/, not to tests.
    t.diagnostic(`served again ${Date.now() - t0} ms after the kill`);
    assert.ok(!j.pidsOf('junction: router').includes(router));
    await waitFor(() => new RegExp(`process ${router} exited on signal 9`).test(j.logText()), 'the exit logged');
  });

  test('a killed application process is replaced and the next request is served', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    await j.configure(expressConfig(port));
    const first = JSON.parse((await get(port, '/pid')).body).pid;
    process.kill(first, 'SIGKILL');
    const r = await get(port, '/pid');
    assert.equal(r.status, 200, r.body);
    const second = JSON.parse(r.body).pid;
    assert.notEqual(second, first);
    await waitFor(() => j.logText().includes(`app process ${first} exited on signal 9`), 'exit logged');
  });

  test('SIGUSR1 reopens the log file after rotation', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    fs.renameSync(j.log, j.log + '.1');
    j.proc!.kill('SIGUSR1');
    await waitFor(() => fs.existsSync(j.log), 'new log file');
    assert.match(fs.readFileSync(j.log + '.1', 'utf8'), /\[notice\] \d+#\d+ signal 10 \(SIGUSR1\) received, log files rotation/);
    // Lines of every process now land in the new file: main's own, and the router's.
    j.proc!.kill('SIGHUP');
    await waitFor(() => j.logText().includes('SIGHUP) received, ignored'), 'main writes the new file');
    const [router] = j.pidsOf('junction: router');
    process.kill(router, 'SIGKILL');
    await waitFor(() => j.logText().includes('router started'), 'router writes the new file');
    assert.ok(!fs.readFileSync(j.log + '.1', 'utf8').includes('SIGHUP'));
  });

  test('SIGHUP is ignored', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    j.proc!.kill('SIGHUP');
    await waitFor(() => j.logText().includes('SIGHUP) received, ignored'), 'notice');
    assert.equal((await j.api('GET', '/config')).status, 200);
  });
});

describe('failures around main', () => {
  test('application processes end when main is killed outright', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    await j.configure(expressConfig(port));
    const app = JSON.parse((await get(port, '/pid')).body).pid as number;
    j.proc!.kill('SIGKILL');
    const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    await waitFor(() => !alive(app), 'the app process to end');
  });

  test('a Unix listener socket left behind by a killed daemon is replaced at restart', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const sock = path.join(j.dir, 'listener.sock');
    const conf = { listeners: { [`unix:${sock}`]: { pass: 'routes' } }, routes: [{ action: { return: 204 } }] };
    await j.configure(conf);
    j.proc!.kill('SIGKILL');
    await waitFor(() => j.proc!.exitCode !== null || j.proc!.signalCode !== null, 'main to die');
    await waitFor(() => j.pidsOf('junction: router').length === 0, 'router to end');
    assert.ok(fs.existsSync(sock), 'the socket file was left behind');
    await j.run();
    assert.deepEqual((await j.api('GET', '/config')).json, conf);
    const { request } = await import('./harness.ts');
    assert.equal((await request({ socketPath: sock, path: '/' })).status, 204);
  });

  test('an application asking for isolation Junction cannot give is refused, not run unprotected', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const r = await j.api('PUT', '/config/applications', {
      sandboxed: { type: 'external', executable: '/bin/true', isolation: { namespaces: { pid: true } } },
    });
    assert.equal(r.status, 500);
    assert.match(r.json.detail, /"isolation" option "namespaces\.pid" is not supported/);
    const plain = await j.api('PUT', '/config/applications', {
      fine: { type: 'external', executable: process.execPath, arguments: [path.join(FIXTURES, 'express', 'app.js')], isolation: { namespaces: { pid: false } } },
    });
    assert.equal(plain.status, 200, plain.body);
  });
});
