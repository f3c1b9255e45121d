/**
 * Several router processes (`settings.listen_threads`): all serve the same
 * listeners, an application keeps one pool whichever router accepts, /status
 * adds them up, a configuration goes to all or none, a router that dies comes
 * back, and the number follows the configuration.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, Junction, freePort, get, waitFor } from './harness.ts';

const express = { type: 'external', working_directory: path.join(FIXTURES, 'express'), executable: process.execPath, arguments: ['app.js'] };

/** Routers of `j`: the primary and the others. */
function routers(j: Junction): { primary: number[]; others: number[] } {
  const all = j.pidsOf('junction: router');
  const others = j.pidsOf('junction: router #');
  return { primary: all.filter((p) => !others.includes(p)), others };
}

/** `n` requests on separate connections; the pids the application answered with. */
async function appPids(port: number, n: number): Promise<Set<number>> {
  const pids = new Set<number>();
  const rs = await Promise.all(Array.from({ length: n }, () => get(port, '/pid', { Connection: 'close' })));
  for (const r of rs) {
    assert.equal(r.status, 200, r.body);
    pids.add(JSON.parse(r.body).pid);
  }
  return pids;
}

describe('listen_threads', () => {
  test('two routers share the listeners and one application pool; /status sums them; all or nothing', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    // No listener: one router.
    assert.equal(j.pidsOf('junction: router').length, 1);
    const port = await freePort();
    const config = {
      settings: { listen_threads: 2 },
      listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
      routes: [
        { match: { uri: '/return' }, action: { return: 204 } },
        { match: { uri: '/static/*' }, action: { share: `${FIXTURES}$uri` } },
        { action: { pass: 'applications/express' } },
      ],
      applications: { express: { ...express, processes: 1 } },
    };
    await j.configure(config);
    assert.deepEqual(Object.values(routers(j)).map((l) => l.length), [1, 1]);

    const pids = await appPids(port, 40);
    assert.equal(pids.size, 1, `one application process: ${[...pids]}`);
    assert.equal((await get(port, '/return')).status, 204);
    assert.equal((await get(port, '/static/index.html')).status, 200);
    const status = (await j.api('GET', '/status')).json;
    assert.ok(status.requests.total >= 42, JSON.stringify(status));
    assert.ok(status.connections.accepted >= 42, JSON.stringify(status));
    assert.equal(status.applications.express.processes.running, 1);

    // A configuration that cannot be applied (its application does not start): both keep the old one.
    const bad = await j.api('PUT', '/config', {
      ...config,
      routes: [{ action: { pass: 'applications/broken' } }],
      applications: { ...config.applications, broken: { type: 'external', executable: '/nonexistent/app' } },
    });
    assert.equal(bad.status, 500);
    assert.deepEqual(await appPids(port, 20), pids);
    assert.equal((await get(port, '/return')).status, 204);

    // Fewer routers when the configuration asks for fewer.
    await j.configure({ ...config, settings: { listen_threads: 1 } });
    await waitFor(() => j.pidsOf('junction: router').length === 1, 'one router left');
    assert.deepEqual(await appPids(port, 10), pids);
  });

  test('a router that dies is started again; the primary takes its applications with it', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    await j.configure({
      settings: { listen_threads: 2 },
      listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/express' } },
      applications: { express: { ...express, processes: 1 } },
    });
    const [first] = await appPids(port, 1);
    const [other] = routers(j).others;
    process.kill(other, 'SIGKILL');
    await waitFor(() => routers(j).others.length === 1 && routers(j).others[0] !== other, 'the router back');
    await waitFor(async () => (await appPids(port, 20).catch(() => new Set([0]))).has(first), 'served again');
    assert.deepEqual(await appPids(port, 20), new Set([first]));

    const [primary] = routers(j).primary;
    process.kill(primary, 'SIGKILL');
    await waitFor(() => routers(j).primary.length === 1 && routers(j).primary[0] !== primary, 'the primary back');
    await waitFor(async () => {
      const p = await appPids(port, 1).catch(() => null);
      return p !== null && !p.has(first);
    }, 'a new application process');
    const now = await appPids(port, 20);
    assert.equal(now.size, 1);
    assert.ok(!now.has(first));
  });
});
