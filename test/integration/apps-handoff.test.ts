/**
 * Connection hand-off to Node applications (docs/external-apps.md,
 * "Connection hand-off"), on by default and off with JUNCTION_HANDOFF=0,
 * through the real daemon: a connection is the router's until its process
 * acknowledges it, so that a process killed right after connections were
 * handed to it costs no new client its request; a process that exits in a
 * handler (process.exit(), an uncaught exception) answers that request with
 * 503 and gives its idle connections back; processes replaced under load
 * (restart, a new `processes`) fail no request, and those replaced while
 * they serve a long request or a WebSocket finish it, however long it takes;
 * an exiting process writes nothing into an upgraded connection; the
 * connection channel is invisible to the application; with two routers only
 * the primary accepts on such a listener.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Junction, freePort, waitFor } from './harness.ts';
import { appStatus, getWith, gone, json, load, nodeApp, progressed, twoPaths, waitPids } from './apps-helpers.ts';

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
    const fresh = load(direct, '/', 4, false, true);
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

describe('Expect: 100-continue on a handed-over connection', () => {
  let j: Junction;
  let direct: number;
  let routed: number;

  before(async () => {
    j = await Junction.start();
    [direct, routed] = [await freePort(), await freePort()];
    await j.configure({
      ...twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes: 1 }) }),
      settings: { listen_threads: 1, http: { max_body_size: 1000 } },
    });
  });
  after(async () => { await j.cleanup(); });

  /** Send a header announcing `length` body bytes with Expect: 100-continue; resolve with what comes back once the server closes. */
  const expect = (port: number, length: number, body = '') => new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d) => {
      got += d;
      if (body !== '' && got.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) { s.write(body); body = ''; }
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write(`POST /body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`);
  });

  test('a body over max_body_size gets 413 without 100 Continue on both paths; one within it is invited', async () => {
    for (const port of [direct, routed]) {
      const over = await expect(port, 5000);
      assert.match(over, /^HTTP\/1\.1 413 /, `port ${port}: ${over}`);
      assert.doesNotMatch(over, /100 Continue/);
      const within = await expect(port, 5, 'hello');
      assert.match(within, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, `port ${port}: ${within}`);
    }
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

/** Sleep `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A raw connection upgraded with a WebSocket handshake (what follows is not
 * framed: the application echoes bytes): the response head, what arrives
 * after it, and a promise of its close.
 */
function upgraded(port: number, p: string): Promise<{ head: string; socket: net.Socket; after(): string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let head: string | undefined;
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.setEncoding('latin1');
    socket.on('error', reject);
    socket.on('data', (d: string) => {
      text += d;
      if (head !== undefined) return;
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      head = text.slice(0, end + 4);
      text = text.slice(end + 4);
      resolve({ head, socket, after: () => text, closed });
    });
    socket.once('connect', () => {
      socket.write(`GET ${p} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
  });
}

describe('processes replaced while they hold handed-over connections', () => {
  let j: Junction;
  let direct: number;
  let routed: number;

  before(async () => {
    j = await Junction.start();
    [direct, routed] = [await freePort(), await freePort()];
  });
  after(async () => { await j.cleanup(); });

  test('a request longer than the kill grace period survives a restart and a new `processes`; idle, the old processes exit at once', async () => {
    const config = (processes: number) => twoPaths(direct, routed, 'app', { app: nodeApp(APP, { processes }) });
    await j.configure(config(2));
    const old = await waitPids(j, APP, 2);
    const logFrom = j.logText().length;
    const start = Date.now();
    // Longer than the 5 s between SIGTERM and SIGKILL.
    const first = getWith(direct, '/slow?ms=7000').then((r) => ({ ...r, at: Date.now() }));
    await sleep(1000);
    assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
    const second = getWith(direct, '/slow?ms=6000').then((r) => ({ ...r, at: Date.now() }));
    await sleep(1000);
    await j.configure(config(3));
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.status, 200, a.body);
    assert.equal(b.status, 200, b.body);
    const byA = Number(/slow done by (\d+)/.exec(a.body)?.[1]);
    const byB = Number(/slow done by (\d+)/.exec(b.body)?.[1]);
    assert.ok(old.includes(byA), `${a.body} (old processes: ${old})`);
    assert.ok(!old.includes(byB), b.body);
    assert.ok(a.at - start >= 7000);
    // Each process that served a slow request leaves as soon as it is done.
    for (const [pid, at] of [[byA, a.at], [byB, b.at]]) {
      await gone(pid);
      assert.ok(Date.now() - at < 2000, `process ${pid} exited ${Date.now() - at} ms after its last response`);
    }
    await waitPids(j, APP, 3, (pids) => !pids.includes(byA) && !pids.includes(byB));
    const log = j.logText().slice(logFrom);
    assert.equal(/exited on signal/.test(log), false, log);
  });

  test('an idle process that does not exit when told to is killed after the grace period', async () => {
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp('stubborn_app.cjs', { processes: 1 }) }));
    const [pid] = await waitPids(j, 'stubborn_app.cjs', 1);
    assert.equal((await getWith(direct, '/')).status, 200);
    const start = Date.now();
    assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
    await waitFor(() => j.logText().includes(`app process ${pid} exited on signal 9`), 'the kill logged', 15_000);
    assert.ok(Date.now() - start < 9000, `${Date.now() - start} ms`);
    assert.match((await getWith(direct, '/')).body, /^stubborn \d+/);
  });
});

describe('upgraded connections', () => {
  let j: Junction;
  let direct: number;
  let routed: number;

  before(async () => {
    j = await Junction.start();
    [direct, routed] = [await freePort(), await freePort()];
    await j.configure(twoPaths(direct, routed, 'app', { app: nodeApp('upgrade_exit_app.cjs', { processes: 1 }) }));
  });
  after(async () => { await j.cleanup(); });

  test('the 101 carries Unit\'s Server field, and an exiting process closes the upgraded connection without writing into it, on either path', async () => {
    for (const port of [direct, routed]) {
      const how = port === direct ? 'handed over' : 'proxied';
      const [pid] = await waitPids(j, 'upgrade_exit_app.cjs', 1);
      const u = await upgraded(port, '/echo');
      assert.match(u.head, /^HTTP\/1\.1 101 /, how);
      assert.match(u.head, /\r\nServer: Unit\/1\.35\.0\r\n/, `${how}: ${u.head}`);
      u.socket.write('ping');
      await waitFor(() => u.after() === 'echo:ping', `${how}: the echo`);
      u.socket.write('exit');
      await u.closed;
      assert.equal(u.after(), 'echo:ping', `${how}: nothing more written`);
      await gone(pid);
      await waitFor(() => j.logText().includes(`app process ${pid} exited with code 4`), 'the exit logged');
    }
  });

  test('restarted, a process keeps its upgraded connection open past the kill grace period, and exits once it closes', async () => {
    const [pid] = await waitPids(j, 'upgrade_exit_app.cjs', 1);
    const logFrom = j.logText().length;
    const u = await upgraded(direct, '/echo');
    assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
    await waitPids(j, 'upgrade_exit_app.cjs', 2);
    // Longer than the 5 s between SIGTERM and SIGKILL.
    await sleep(6000);
    u.socket.write('still');
    await waitFor(() => u.after() === 'echo:still', 'the echo');
    const closedAt = Date.now();
    u.socket.end();
    await gone(pid);
    assert.ok(Date.now() - closedAt < 2000, `${Date.now() - closedAt} ms`);
    assert.equal(j.logText().slice(logFrom).includes(`app process ${pid} exited on signal`), false, j.logText());
    assert.match((await getWith(direct, '/')).body, /^plain \d+/);
  });
});

describe('the connection channel', () => {
  test('is invisible to the application, which may disconnect from its parent: hand-off keeps working', async () => {
    const j = await Junction.start();
    try {
      const direct = await freePort();
      await j.configure(twoPaths(direct, await freePort(), 'app', { app: nodeApp('ipc_app.cjs', { processes: 1 }) }));
      const [pid] = await waitPids(j, 'ipc_app.cjs', 1);
      const seen = {
        pid, send: 'undefined', connected: null, channel: 'undefined', disconnect: 'undefined',
        messages: 0, disconnects: 0, handle: 'TCP',
      };
      for (let i = 0; i < 5; i++) assert.deepEqual(await json(direct, '/'), seen);
      assert.equal((await getWith(direct, '/disconnect')).status, 200);
      for (let i = 0; i < 5; i++) assert.deepEqual(await json(direct, '/'), seen);
      // Restarted, the process still gives its connections back and exits cleanly.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        assert.equal((await json(direct, '/', agent)).pid, pid);
        assert.equal((await j.api('GET', '/control/applications/app/restart')).status, 200);
        await gone(pid);
        const next = await getReused(direct, '/', agent);
        assert.equal(next.reused, true);
        assert.notEqual(JSON.parse(next.body).pid, pid);
      } finally {
        agent.destroy();
      }
      assert.equal(j.logText().includes(`app process ${pid} exited on signal`), false, j.logText());
    } finally {
      await j.cleanup();
    }
  });
});
