/**
 * Common application options through the real daemon (spec/applications.md
 * §2.1, §2.2, §3.1, §5; control-api.md §8): `environment` merged over the
 * daemon's, `working_directory`, `executable` and `arguments`, `stdout` and
 * `stderr` files (daemon mode only), `type` with a version selecting among
 * the discovered runtimes, and `modules` in `/status`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, FIXTURES, Junction, freePort, get, request, waitFor } from './harness.ts';
import { NODE_DIR, getWith, json, nodeApp } from './apps-helpers.ts';
import { discoverModules } from '../../src/apps/discovery.ts';

describe('application options', () => {
  let j: Junction;
  let port: number;

  const configure = (app: Record<string, unknown>) => j.configure({
    listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/app' } },
    applications: { app },
  });

  before(async () => {
    j = await Junction.start({ env: { FOO: 'from-daemon', JUNCTION_TEST_MARK: 'inherited' } });
    port = await freePort();
  });

  after(async () => { await j.cleanup(); });

  test('environment is merged over the daemon\'s; PATH is inherited unless set', async () => {
    await configure(nodeApp('compat_app.cjs', { environment: { FOO: 'bar' } }));
    const info = await json(port, '/pid');
    assert.equal(info.env.FOO, 'bar');
    assert.equal(info.env.PATH, process.env.PATH);
    assert.equal(info.env.LISTEN_FDS, null, 'activation variables are not left to the app');
    await configure(nodeApp('compat_app.cjs', { environment: { PATH: '/x' } }));
    const other = await json(port, '/pid');
    assert.equal(other.env.PATH, '/x');
    assert.equal(other.env.FOO, 'from-daemon');
  });

  test('working_directory, a relative executable (not looked up in PATH) and its arguments', async () => {
    await configure({
      type: 'external',
      working_directory: path.dirname(NODE_DIR),
      executable: path.relative(path.dirname(NODE_DIR), process.execPath),
      arguments: ['node/compat_app.cjs', '--flag', 'two words'],
    });
    const info = await json(port, '/pid');
    assert.equal(info.cwd, path.dirname(NODE_DIR));
    assert.deepEqual(info.argv, ['--flag', 'two words']);
    // The application reports the port it asked for.
    assert.deepEqual(info.address, { address: '127.0.0.1', family: 'IPv4', port: 3000 });
    const r = await j.api('PUT', '/config/applications/app', { type: 'external', working_directory: NODE_DIR, executable: 'node', arguments: ['compat_app.cjs'] });
    assert.equal(r.status, 500, 'a bare "node" is not searched in PATH');
  });

  test('type with a version selects among the discovered runtimes; an unknown one is refused', async () => {
    const modules = (await discoverModules()).filter((m) => m.type === 'python');
    const major = modules[0].version.split('.')[0];
    const minor = modules[0].version.split('.').slice(0, 2).join('.');
    for (const type of ['python', `python ${major}`, `python${minor}`, `python ${modules[0].version}`]) {
      await configure({ type, path: path.join(FIXTURES, 'python'), module: 'wsgi_echo' });
      const r = await get(port, '/sys');
      assert.equal(r.status, 200, `${type}: ${r.body}`);
      assert.equal(JSON.parse(r.body).executable, modules[0].lib, type);
    }
    for (const type of ['python 9', `python ${minor}9`]) {
      const r = await j.api('PUT', '/config/applications/app', { type, path: path.join(FIXTURES, 'python'), module: 'wsgi_echo' });
      assert.equal(r.status, 400, type);
      assert.equal(r.json.error, 'Invalid configuration.');
      assert.equal(r.json.detail, `The module to run "${type}" is not found among the available application modules.`);
    }
    assert.equal((await j.api('PUT', '/config/applications/app/type', '"external 1"')).status, 400);
  });

  test('/status modules: discovered runtimes by language, external never listed', async () => {
    const modules = await discoverModules();
    const r = await j.api('GET', '/status/modules');
    assert.equal(r.status, 200);
    const byType = new Map<string, typeof modules>();
    for (const m of modules) byType.set(m.type, [...byType.get(m.type) ?? [], m]);
    assert.deepEqual(Object.keys(r.json).sort(), [...byType.keys()].sort());
    for (const [type, list] of byType) {
      const expected = list.map((m) => ({ version: m.version, lib: m.lib }));
      assert.deepEqual(r.json[type], expected.length === 1 ? expected[0] : expected, type);
    }
    assert.equal(r.json.external, undefined);
  });
});

describe('stdout and stderr files', () => {
  test('in daemon mode they receive the application\'s output; with --no-daemon they are ignored', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-output-'));
    fs.chmodSync(dir, 0o777);
    const sock = path.join(dir, 'control.sock');
    const log = path.join(dir, 'unit.log');
    const pidFile = path.join(dir, 'unit.pid');
    const r = spawnSync(process.execPath, [BIN, '--control', `unix:${sock}`, '--statedir', path.join(dir, 'state'),
      '--log', log, '--pid', pidFile, '--tmpdir', dir], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const main = Number(fs.readFileSync(pidFile, 'utf8'));
    const api = async (method: string, p: string, body?: unknown) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      return request({ socketPath: sock, method, path: p, body: data });
    };
    try {
      const port = await freePort();
      const app = nodeApp('compat_app.cjs', { stdout: path.join(dir, 'out.log'), stderr: 'err.log', working_directory: dir, arguments: [path.join(NODE_DIR, 'compat_app.cjs')] });
      const put = await api('PUT', '/config', { listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/app' } }, applications: { app } });
      assert.equal(put.status, 200, put.body);
      assert.equal((await getWith(port, '/output?id=daemon')).status, 200);
      await waitFor(() => fs.existsSync(path.join(dir, 'out.log')) && fs.readFileSync(path.join(dir, 'out.log'), 'utf8').includes('stdout line daemon'), 'stdout in out.log');
      await waitFor(() => fs.existsSync(path.join(dir, 'err.log')) && fs.readFileSync(path.join(dir, 'err.log'), 'utf8').includes('stderr line daemon'), 'stderr in err.log (relative to working_directory)');
      assert.ok(!fs.readFileSync(log, 'utf8').includes('stderr line daemon'));
    } finally {
      process.kill(main, 'SIGTERM');
      await waitFor(() => !fs.existsSync(sock), 'the daemon to exit');
    }

    // --no-daemon: the options are ignored, stderr goes to the log.
    const j = await Junction.start();
    try {
      const port = await freePort();
      const app = nodeApp('compat_app.cjs', { stdout: path.join(dir, 'out2.log'), stderr: path.join(dir, 'err2.log') });
      await j.configure({ listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/app' } }, applications: { app } });
      assert.equal((await getWith(port, '/output?id=foreground')).status, 200);
      await waitFor(() => j.logText().includes('stderr line foreground'), 'stderr in the log');
      assert.equal(fs.existsSync(path.join(dir, 'out2.log')), false);
      assert.equal(fs.existsSync(path.join(dir, 'err2.log')), false);
    } finally {
      await j.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
