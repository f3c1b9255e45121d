/**
 * Applications through reconfiguration, restart, crashes and shutdown, with
 * the real daemon (spec/applications.md §1.5, §1.7, §2.6, §2.7, §6.1;
 * control-api.md §3.4): restarting replaces processes without failing a
 * request; an application restarts exactly when its own object changes;
 * requests in flight finish on the old processes; a configuration whose
 * application cannot start is refused (500) and the previous one keeps
 * serving; a crashed process is replaced; at shutdown applications get
 * SIGTERM and time to finish.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Junction, freePort, waitFor } from './harness.ts';
import { ONE_ROUTER, appPids, getWith, gone, json, load, nodeApp, progressed, twoPaths, waitPids } from './apps-helpers.ts';

const APP = 'compat_app.cjs';

describe('restart and reconfiguration', () => {
  let j: Junction;
  let direct: number;
  let routed: number;
  let scratch: string;

  before(async () => {
    j = await Junction.start();
    direct = await freePort();
    routed = await freePort();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-life-'));
    fs.chmodSync(scratch, 0o777);
  });

  after(async () => {
    await j.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('GET /control/applications/NAME/restart: 200, new processes, no request fails meanwhile', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 2 }) }));
    const before = await waitPids(j, APP, 2);
    // Kept-alive clients on both paths: the direct listener hands its connections to the processes.
    const a = load(direct, '/', 8);
    const b = load(routed, '/', 8);
    await progressed(a.result, 50);
    await progressed(b.result, 50);
    for (let i = 0; i < 2; i++) {
      const r = await j.api('GET', '/control/applications/app/restart');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { success: 'Ok' });
      await progressed(a.result, 50);
      await progressed(b.result, 50);
    }
    const ra = await a.stop();
    const rb = await b.stop();
    assert.equal(ra.failed, 0, JSON.stringify(ra.failures));
    assert.equal(rb.failed, 0, JSON.stringify(rb.failures));
    for (const pid of before) await gone(pid);
    const now = await waitPids(j, APP, 2);
    assert.ok(now.every((p) => !before.includes(p)));
    assert.equal(j.logText().includes('[alert]'), false, j.logText());
  });

  test('with two routers (the second reaches applications through the first): restarts fail no request', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 2 }) }, { listen_threads: 2 }));
    const a = load(direct, '/', 8);
    const b = load(routed, '/', 8);
    await progressed(a.result, 50);
    await progressed(b.result, 50);
    for (let i = 0; i < 2; i++) {
      assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
      await progressed(a.result, 50);
      await progressed(b.result, 50);
    }
    const ra = await a.stop();
    const rb = await b.stop();
    assert.equal(ra.failed, 0, JSON.stringify(ra.failures));
    assert.equal(rb.failed, 0, JSON.stringify(rb.failures));
  });

  test('a handed-over connection idle longer than settings.http.idle_timeout is closed', async () => {
    const config = twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) });
    await j.configure({ ...config, settings: { ...config.settings as object, http: { idle_timeout: 1 } } });
    for (const port of [direct, routed]) {
      const s = net.connect(port, '127.0.0.1');
      let text = '';
      s.on('data', (d) => { text += d; });
      const ended = new Promise((r) => s.once('close', r));
      s.write('GET /pid HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => text.includes('"pid"'), 'the answer');
      // Nothing more is sent: the server ends the connection.
      await ended;
      assert.match(text, /^HTTP\/1\.1 200 OK/);
    }
  });

  test('restart: only GET, only existing applications', async () => {
    const del = await j.api('DELETE', '/control/applications/app/restart');
    assert.equal(del.status, 405);
    assert.deepEqual(del.json, { error: "Method isn't allowed." });
    const missing = await j.api('GET', '/control/applications/nope/restart');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: "Value doesn't exist." });
  });

  test('an application restarts exactly when its own object changes', async () => {
    const apps = () => ({
      a: nodeApp(APP, { processes: 1, environment: { FOO: 'a' } }),
      b: { ...nodeApp(APP, { processes: 1 }), environment: { FOO: 'b' } },
    });
    const config = (extra: Record<string, unknown> = {}) => ({
      listeners: { [`127.0.0.1:${direct}`]: { pass: 'applications/a' }, [`127.0.0.1:${routed}`]: { pass: 'applications/b' } },
      applications: apps(),
      settings: ONE_ROUTER,
      ...extra,
    });
    await j.configure(config());
    const a0 = (await json(direct, '/pid')).pid;
    const b0 = (await json(routed, '/pid')).pid;

    // Listeners and routes change: nobody restarts.
    const extra = await freePort();
    await j.configure({
      ...config(),
      listeners: { ...config().listeners as object, [`127.0.0.1:${extra}`]: { pass: 'routes' } },
      routes: [{ action: { pass: 'applications/b' } }],
    });
    assert.equal((await json(direct, '/pid')).pid, a0);
    assert.equal((await json(routed, '/pid')).pid, b0);
    assert.equal((await json(extra, '/pid')).pid, b0);

    // Another application changes: this one keeps its process.
    const r = await j.api('PUT', '/config/applications/b/environment/FOO', '"changed"');
    assert.equal(r.status, 200, r.body);
    const b1 = (await json(routed, '/pid'));
    assert.notEqual(b1.pid, b0);
    assert.equal(b1.env.FOO, 'changed');
    assert.equal((await json(direct, '/pid')).pid, a0);
    await gone(b0);

    // The same members in another order: a different object, a restart (Unit compares the text).
    const conf = (await j.api('GET', '/config/applications/a')).json as Record<string, unknown>;
    const reordered = Object.fromEntries(Object.entries(conf).reverse());
    assert.equal((await j.api('PUT', '/config/applications/a', reordered)).status, 200);
    const a1 = (await json(direct, '/pid')).pid;
    assert.notEqual(a1, a0);
    assert.equal((await json(routed, '/pid')).pid, b1.pid);
  });

  test('requests in flight finish on the old processes; new ones go to the new', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1, environment: { FOO: 'old' } }) }));
    const old = (await json(routed, '/pid')).pid;
    const file = path.join(scratch, 'inflight');
    const viaRouter = getWith(routed, `/wait?file=${encodeURIComponent(file)}`);
    const viaDirect = getWith(direct, `/wait?file=${encodeURIComponent(file)}`);
    await waitFor(() => j.pidsOf(APP).length > 0, 'the process');
    // Both requests reached the process before the change.
    await waitFor(async () => (await j.api('GET', '/status/applications/app/requests/active')).json === 1, 'the routed request in the app');
    assert.equal((await j.api('PUT', '/config/applications/app/environment/FOO', '"new"')).status, 200);
    const fresh = await json(routed, '/pid');
    assert.notEqual(fresh.pid, old);
    assert.equal(fresh.env.FOO, 'new');
    assert.ok(appPids(j, APP).includes(old), 'the old process is still there');
    fs.writeFileSync(file, '');
    const [r1, r2] = await Promise.all([viaRouter, viaDirect]);
    assert.equal(r1.status, 200);
    assert.equal(r1.body, `waited ${old}`);
    assert.equal(r2.status, 200);
    assert.equal(r2.body, `waited ${old}`);
    await gone(old);
  });

  test('an application that fails to start: PUT 500, the previous configuration keeps serving', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }));
    const before = (await j.api('GET', '/config')).json;
    const pid = (await json(routed, '/pid')).pid;
    const broken = twoPaths(direct, routed, 'app', { app: nodeApp('no-such-file.cjs', { processes: 1 }) });
    const r = await j.api('PUT', '/config', broken);
    assert.equal(r.status, 500);
    assert.equal(r.json.error, 'Failed to apply new configuration.');
    assert.deepEqual((await j.api('GET', '/config')).json, before);
    assert.equal((await json(routed, '/pid')).pid, pid);
    assert.equal((await json(direct, '/pid')).pid, pid);
    const log = j.logText();
    assert.match(log, /\[warn\] \d+#\d+ failed to start application "app"/);
    assert.match(log, /\[alert\] \d+#\d+ failed to apply new conf/);
    // A missing executable fails the same way.
    const missing = await j.api('PUT', '/config/applications/app/executable', '"/nonexistent/node"');
    assert.equal(missing.status, 500);
    assert.equal((await json(routed, '/pid')).pid, pid);
  });

  test('a crashed process is replaced: 503 for its request, then the next one is served', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }));
    const pid = (await json(routed, '/pid')).pid;
    const r = await getWith(routed, '/exit');
    assert.equal(r.status, 503);
    await gone(pid);
    await waitFor(() => j.logText().includes(`app process ${pid} exited with code 3`), 'the exit logged');
    const next = await waitFor(async () => (await json(routed, '/pid')).pid, 'a new process');
    assert.notEqual(next, pid);
    // On a handed-over connection the process answers 503 itself as it exits; the next request is served.
    const crash = await getWith(direct, '/exit');
    assert.equal(crash.status, 503);
    assert.match(crash.body, /<title>Error 503<\/title>/);
    await gone(next);
    assert.notEqual((await json(direct, '/pid')).pid, next);
  });
});

describe('shutdown', () => {
  test('applications get SIGTERM and time to finish before SIGKILL', async () => {
    const j = await Junction.start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-term-'));
    fs.chmodSync(dir, 0o777);
    const mark = path.join(dir, 'marks');
    try {
      const port = await freePort();
      await j.configure({
        listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/term' } },
        applications: { term: nodeApp('term_app.cjs', { processes: 2, environment: { MARK_FILE: mark } }) },
      });
      const pids = await waitPids(j, 'term_app.cjs', 2);
      assert.equal((await getWith(port, '/')).status, 200);
      assert.equal(await j.stop('SIGTERM'), 0);
      const text = fs.readFileSync(mark, 'utf8');
      for (const pid of pids) {
        assert.ok(text.includes(`SIGTERM ${pid}`), text);
        assert.ok(text.includes(`clean exit ${pid}`), text);
        assert.ok(!fs.existsSync(`/proc/${pid}`));
      }
    } finally {
      await j.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
