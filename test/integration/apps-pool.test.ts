/**
 * Unit's process management through the real daemon (spec/applications.md
 * §2.3, §2.4, §5 `/status`): `processes` as a number and as an object
 * (spare, max, idle_timeout), `limits.timeout` and `limits.requests`,
 * requests queued while processes start, and the `applications` section of
 * `/status`. Requests go through routes, so the router sees each of them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, Junction, freePort, waitFor } from './harness.ts';
import { appPids, appStatus, getWith, gone, json, nodeApp, waitPids } from './apps-helpers.ts';

const APP = 'compat_app.cjs';

describe('application process pools', () => {
  let j: Junction;
  let port: number;
  let scratch: string;

  /** One listener, routes passing everything to application `app`. */
  const configure = (app: Record<string, unknown>) => j.configure({
    listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
    routes: [{ action: { pass: 'applications/app' } }],
    applications: { app },
  });

  before(async () => {
    j = await Junction.start();
    port = await freePort();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-pool-'));
    fs.chmodSync(scratch, 0o777);
  });

  after(async () => {
    await j.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test('processes: 3 → three processes exist when the PUT returns; a killed one is replaced', async () => {
    await configure(nodeApp(APP, { processes: 3 }));
    const status = await appStatus(j, 'app');
    assert.deepEqual(status.processes, { running: 3, starting: 0, idle: 3 });
    const pids = await waitPids(j, APP, 3);
    process.kill(pids[0], 'SIGKILL');
    await gone(pids[0]);
    const after = await waitPids(j, APP, 3, (now) => !now.includes(pids[0]));
    assert.ok(after.includes(pids[1]) && after.includes(pids[2]), 'the others are untouched');
    await waitFor(() => j.logText().includes(`app process ${pids[0]} exited on signal 9`), 'the exit logged');
    assert.equal((await getWith(port, '/')).status, 200);
  });

  test('processes {spare: 0, max: 8, idle_timeout: 1}: none, one after a request, none again when idle', async () => {
    await configure(nodeApp(APP, { processes: { spare: 0, max: 8, idle_timeout: 1 } }));
    assert.deepEqual((await appStatus(j, 'app')).processes, { running: 0, starting: 0, idle: 0 });
    await waitFor(() => appPids(j, APP).length === 0, 'no process');
    const { pid } = await json(port, '/pid');
    assert.deepEqual(appPids(j, APP), [pid]);
    assert.equal((await appStatus(j, 'app')).processes.running, 1);
    // A kept-alive client connection does not keep the process.
    await waitFor(async () => (await appStatus(j, 'app')).processes.running === 0, 'the idle process to stop');
    await gone(pid);
  });

  test('processes {spare: 2, max: 8, idle_timeout: 1}: two, three while one is busy, two again', async () => {
    await configure(nodeApp(APP, { processes: { spare: 2, max: 8, idle_timeout: 1 } }));
    assert.deepEqual((await appStatus(j, 'app')).processes, { running: 2, starting: 0, idle: 2 });
    const before = await waitPids(j, APP, 2);
    const file = path.join(scratch, 'spare');
    const held = getWith(port, `/wait?file=${encodeURIComponent(file)}`);
    // One spare is busy: another starts so that two stay idle.
    await waitFor(async () => {
      const s = await appStatus(j, 'app');
      return s.processes.running === 3 && s.processes.idle === 2 && s.requests.active === 1;
    }, 'three processes, two idle');
    fs.writeFileSync(file, '');
    assert.match((await held).body, /^waited \d+$/);
    await waitFor(async () => (await appStatus(j, 'app')).processes.running === 2, 'back to two');
    const now = await waitPids(j, APP, 2);
    assert.ok(now.some((p) => before.includes(p)), 'an original process stays');
  });

  test('limits.timeout: 503 when the app stays silent; the process stays and serves on', async () => {
    await configure(nodeApp(APP, { processes: 1, limits: { timeout: 1 } }));
    const { pid } = await json(port, '/pid');
    const r = await getWith(port, '/hold?id=t1');
    assert.equal(r.status, 503);
    assert.match(r.body, /<title>Error 503<\/title>/);
    const again = await json(port, '/pid');
    assert.equal(again.pid, pid, 'same process');
    // The request is still held in the process; its late answer goes nowhere.
    assert.equal((await getWith(port, '/held')).body, '1');
    await getWith(port, '/release?id=t1');
  });

  test('limits.requests: a process is replaced after serving that many requests', async () => {
    await configure(nodeApp(APP, { processes: 1, limits: { requests: 2 } }));
    const a = (await json(port, '/pid')).pid;
    const b = (await json(port, '/pid')).pid;
    const c = (await json(port, '/pid')).pid;
    assert.equal(a, b);
    assert.notEqual(b, c);
    await gone(a);
  });

  test('requests wait while the process starts; /status counts them as active, the process as starting', async () => {
    const startFile = path.join(scratch, 'start');
    fs.rmSync(startFile, { force: true });
    await configure(nodeApp('slow_start.cjs', { processes: { spare: 0, max: 1 }, environment: { START_FILE: startFile } }));
    const requests = [getWith(port, '/a'), getWith(port, '/b'), getWith(port, '/c')];
    await waitFor(async () => {
      const s = await appStatus(j, 'app');
      return s.processes.starting === 1 && s.processes.running === 0 && s.requests.active === 3;
    }, 'three queued requests, one process starting');
    fs.writeFileSync(startFile, '');
    const answers = await Promise.all(requests);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
    assert.equal(new Set(answers.map((r) => r.body)).size, 1, 'one process served them all');
    const s = await appStatus(j, 'app');
    assert.deepEqual(s, { processes: { running: 1, starting: 0, idle: 1 }, requests: { active: 0 } });
  });

  test('/status applications: running, starting and idle processes, active requests', async () => {
    await configure(nodeApp(APP, { processes: { spare: 1, max: 1 } }));
    assert.deepEqual(await appStatus(j, 'app'), { processes: { running: 1, starting: 0, idle: 1 }, requests: { active: 0 } });
    const held = [getWith(port, '/hold?id=q1'), getWith(port, '/hold?id=q2')];
    await waitFor(async () => {
      const s = await appStatus(j, 'app');
      return s.requests.active === 2 && s.processes.idle === 0 && s.processes.running === 1;
    }, 'two active requests, no idle process');
    await getWith(port, '/release?id=q1');
    await getWith(port, '/release?id=q2');
    await Promise.all(held);
    await waitFor(async () => (await appStatus(j, 'app')).requests.active === 0, 'no active request');
    const whole = await j.api('GET', '/status');
    assert.deepEqual(Object.keys(whole.json.applications), ['app']);
    assert.equal(whole.json.applications.app.processes.idle, 1);
    assert.ok(whole.json.requests.total > 0);
  });

  for (const [what, processes] of [['2 processes', 2], ['processes {max: 3, spare: 0}', { max: 3, spare: 0 }]] as const) {
    test(`Python WSGI, ${what}: short requests do not wait behind a long one while another process can serve them`, async () => {
      await configure({ type: 'python', path: path.join(FIXTURES, 'python'), module: 'wsgi_echo', processes });
      // A process is up: the long request takes it.
      assert.equal((await getWith(port, '/pid')).status, 200);
      let longDone = false;
      const slowPath = getWith(port, '/sleep?3').then((r) => { longDone = true; return r; });
      await waitFor(async () => (await appStatus(j, 'app')).requests.active >= 1 ? true : null, 'the long request in flight');
      // What is under test: nothing waits behind a request that has run 50 ms or more (it is
      // known to be slow then); a request pipelined before that point may still wait.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const short = await Promise.all(Array.from({ length: 6 }, () => getWith(port, '/pid')));
      assert.ok(short.every((r) => r.status === 200), JSON.stringify(short.map((r) => r.status)));
      assert.equal(longDone, false, 'the short requests were all answered before the 3 s request ended');
      assert.equal((await slowPath).status, 200);
    });
  }

});
