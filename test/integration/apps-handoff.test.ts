/**
 * Connection hand-off to Node applications (docs/external-apps.md,
 * "Connection hand-off"), on by default and off with JUNCTION_HANDOFF=0,
 * through the real daemon: a connection is the router's until its process
 * acknowledges it, so that a process killed right after connections were
 * handed to it costs no new client its request; a process that exits in a
 * handler (process.exit(), an uncaught exception) answers that request with
 * 503 and gives its idle connections back; processes replaced under load
 * (restart, a new `processes`) fail no request; with two routers only the
 * primary accepts on such a listener.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Junction, freePort, waitFor } from './harness.ts';
import { appStatus, getWith, gone, json, load, nodeApp, progressed, twoPaths, waitPids, type LoadResult } from './apps-helpers.ts';

const APP = 'compat_app.cjs';

/** GET `p` with `agent`: status, body, and whether it went on a connection used before. */
function getReused(port: number, p: string, agent: http.Agent): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/**
 * `clients` clients sending GET `p` back to back, each on a new connection
 * (`Connection: close`), until stop(); every non-200 answer or error counts.
 */
function loadFresh(port: number, p: string, clients: number): { stop(): Promise<LoadResult>; result: LoadResult } {
  const result: LoadResult = { ok: 0, failed: 0, failures: {}, bodies: {} };
  let running = true;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < clients; i++) {
    loops.push((async () => {
      while (running) {
        try {
          const r = await getWith(port, p);
          if (r.status === 200) result.ok++;
          else {
            result.failed++;
            result.failures[String(r.status)] = (result.failures[String(r.status)] ?? 0) + 1;
          }
        } catch (e) {
          result.failed++;
          const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
          result.failures[code] = (result.failures[code] ?? 0) + 1;
        }
      }
    })());
  }
  return { result, async stop() { running = false; await Promise.all(loops); return result; } };
}

/** Pids of the processes holding the listening TCP socket of 127.0.0.1:`port`. */
function listeningHolders(port: number, pids: number[]): number[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const line = fs.readFileSync('/proc/net/tcp', 'utf8').split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === `0100007F:${hex}` && f[3] === '0A');
  assert.ok(line, `a listening socket on port ${port}`);
  const inode = `socket:[${line[9]}]`;
  return pids.filter((pid) => fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === inode; } catch { return false; }
  }));
}

describe('connection hand-off', () => {
  let j: Junction;
  let direct: number;
  let routed: number;

  before(async () => {
    j = await Junction.start();
    direct = await freePort();
    routed = await freePort();
  });

  after(async () => {
    await j.cleanup();
  });

  test('a process killed (SIGKILL) right after connections were handed to it: new connections are served', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }));
    const [pid] = await waitPids(j, APP, 1);
    assert.equal((await json(direct, '/pid')).pid, pid);
    // Connections handed to the process, idle.
    const idle = await Promise.all(Array.from({ length: 5 }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(direct, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    })));
    await waitFor(async () => (await j.api('GET', '/status/connections/accepted')).json >= 6, 'the connections counted');
    process.kill(pid, 'SIGKILL');
    // At once, before Junction can know: each new connection is handed to the dead
    // process or held for the next one, and served either way.
    const answers = await Promise.all(Array.from({ length: 20 }, () => getWith(direct, '/pid')));
    for (const r of answers) {
      assert.equal(r.status, 200, r.body);
      assert.notEqual(JSON.parse(r.body).pid, pid);
    }
    for (const s of idle) s.destroy();
    await gone(pid);
  });

  test('process.exit() in a handler: that client gets 503, an idle keep-alive client of the process is served on its next request', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }));
    const [pid] = await waitPids(j, APP, 1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await getReused(direct, '/pid', agent);
      assert.equal(first.status, 200);
      assert.equal(JSON.parse(first.body).pid, pid);

      const crash = await getWith(direct, '/exit');
      assert.equal(crash.status, 503);
      assert.match(crash.body, /<title>Error 503<\/title>/);
      assert.equal(crash.headers.connection, 'close');
      assert.equal(crash.headers.server, 'Unit/1.35.0');
      await gone(pid);

      // The idle connection went back to the router when the process exited: the
      // client's next request goes on it and is answered by the new process.
      const next = await getReused(direct, '/pid', agent);
      assert.equal(next.status, 200, next.body);
      assert.notEqual(JSON.parse(next.body).pid, pid);
      assert.equal(next.reused, true, 'the same connection');
      await waitFor(() => j.logText().includes(`app process ${pid} exited with code 3`), 'the exit logged');
    } finally {
      agent.destroy();
    }
  });

  test('an uncaught exception in a handler: that client gets 503, the next request is served', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }));
    const [pid] = await waitPids(j, APP, 1);
    const r = await getWith(direct, '/throw');
    assert.equal(r.status, 503);
    assert.match(r.body, /<title>Error 503<\/title>/);
    await gone(pid);
    assert.notEqual((await json(direct, '/pid')).pid, pid);
    await waitFor(() => j.logText().includes(`app process ${pid} exited with code 1`), 'the exit logged');
  });

  test('processes replaced under load (two restarts, a new `processes`), with two routers: no request fails', async () => {
    const config = (processes: number) => twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes }) }, { listen_threads: 2 });
    await j.configure(config(2));
    await waitPids(j, APP, 2);
    const logFrom = j.logText().length;
    const kept = load(direct, '/', 8);
    const fresh = loadFresh(direct, '/', 4);
    await progressed(kept.result, 100);
    await progressed(fresh.result, 50);
    for (let i = 0; i < 2; i++) {
      assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
      await progressed(kept.result, 100);
      await progressed(fresh.result, 50);
    }
    await j.configure(config(3));
    await progressed(kept.result, 100);
    await progressed(fresh.result, 50);
    await j.configure(config(1));
    await progressed(kept.result, 100);
    await progressed(fresh.result, 50);
    const rk = await kept.stop();
    const rf = await fresh.stop();
    assert.equal(rk.failed, 0, JSON.stringify(rk.failures));
    assert.equal(rf.failed, 0, JSON.stringify(rf.failures));
    await waitPids(j, APP, 1);
    const log = j.logText().slice(logFrom);
    assert.equal(log.includes('[alert]'), false, log);
  });

  test('with two routers, only the primary accepts on a listener whose connections it hands over', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }, { listen_threads: 2 }));
    await waitFor(() => j.pidsOf('junction: router #').length === 1, 'the second router');
    const all = j.pidsOf('junction: router');
    const [other] = j.pidsOf('junction: router #');
    const primary = all.filter((p) => p !== other);
    assert.deepEqual(listeningHolders(direct, all), primary);
    assert.deepEqual(listeningHolders(routed, all).sort(), [...all].sort());
    const answers = await Promise.all(Array.from({ length: 20 }, () => getWith(direct, '/pid')));
    assert.deepEqual(answers.map((r) => r.status), answers.map(() => 200));
    // Through routes, the listener is the second router's again.
    await j.configure({ ...twoPaths(routed, direct, 'app', { app: nodeApp(APP, { processes: 1 }) }, { listen_threads: 2 }) });
    assert.deepEqual(listeningHolders(direct, all).sort(), [...all].sort());
    assert.deepEqual(listeningHolders(routed, all), primary);
  });

  test('an idle keep-alive connection outlives its process: the next request on it reaches the new one', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1, environment: { FOO: 'old' } }) }));
    const [pid] = await waitPids(j, APP, 1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal(JSON.parse((await getReused(direct, '/pid', agent)).body).pid, pid);
      assert.equal((await j.api('PUT', '/config/applications/app/environment/FOO', '"new"')).status, 200);
      await gone(pid);
      const next = await getReused(direct, '/pid', agent);
      assert.equal(next.status, 200);
      assert.equal(JSON.parse(next.body).env.FOO, 'new');
      assert.equal(next.reused, true, 'the same connection');
    } finally {
      agent.destroy();
    }
  });
});

/**
 * Whether a request on a connection of the `direct` listener was proxied by
 * the router (it counts in `requests.active` while the app holds it) rather
 * than served by the process alone.
 */
async function proxied(j: Junction, direct: number, id: string): Promise<boolean> {
  const held = getWith(direct, `/hold?id=${id}`);
  await waitFor(async () => (await getWith(direct, '/held')).body === '1', 'the request held by the app');
  const active = (await appStatus(j, 'app')).requests.active;
  await getWith(direct, `/release?id=${id}`);
  assert.equal((await held).status, 200);
  return active > 0;
}

describe('a request that kills its process or drops its connection', () => {
  let j: Junction;
  let direct: number;
  let routed: number;
  let countFile: string;

  before(async () => {
    j = await Junction.start();
    [direct, routed] = [await freePort(), await freePort()];
    countFile = path.join(j.dir, 'requests.log');
    fs.writeFileSync(countFile, '', { mode: 0o666 });
    fs.chmodSync(j.dir, 0o755);
    await j.configure(twoPaths(direct, routed, 'app', {
      app: nodeApp('count_app.cjs', { processes: 2, environment: { COUNT_FILE: countFile } }),
    }));
  });
  after(async () => { await j.cleanup(); });

  /** How many times the application got `url`. */
  const deliveries = (url: string) => fs.readFileSync(countFile, 'utf8').split('\n').filter((l) => l.endsWith(` ${url}`)).length;

  test('is answered 503 and never sent again to another process, on either path (as Unit)', async () => {
    for (const port of [direct, routed]) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        // A kept-alive connection used just before: the failure is not an idle close to retry.
        assert.equal((await getWith(port, '/warm', agent)).status, 200);
        fs.writeFileSync(countFile, '');
        assert.equal((await getWith(port, '/crash', agent)).status, 503, `port ${port}`);
        assert.equal(deliveries('/crash'), 1, `port ${port}: ${fs.readFileSync(countFile, 'utf8')}`);
        await waitPids(j, 'count_app.cjs', 2);
      } finally { agent.destroy(); }
    }
    // Proxied, a connection closed unanswered by a live process is 503 too, delivered once.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      assert.equal((await getWith(routed, '/warm', agent)).status, 200);
      fs.writeFileSync(countFile, '');
      assert.equal((await getWith(routed, '/destroy', agent)).status, 503);
      assert.equal(deliveries('/destroy'), 1, fs.readFileSync(countFile, 'utf8'));
    } finally { agent.destroy(); }
  });
});

describe('JUNCTION_HANDOFF', () => {
  test('on by default; JUNCTION_HANDOFF=0 in the daemon\'s environment proxies every request', async () => {
    for (const env of [{}, { JUNCTION_HANDOFF: '0' }] as Record<string, string>[]) {
      const j = await Junction.start({ env });
      try {
        const direct = await freePort();
        await j.configure(twoPaths(direct, await freePort(), 'app', { app: nodeApp(APP, { processes: 1 }) }));
        assert.equal(await proxied(j, direct, 'h'), env.JUNCTION_HANDOFF === '0', JSON.stringify(env));
      } finally {
        await j.cleanup();
      }
    }
  });
});
