/**
 * `external` applications over HTTP/1.1 on their inherited socket: unmodified
 * Node apps through the preload (node:http, Express CJS and ESM, `env node`),
 * and a non-Node program reading LISTEN_FDS.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { FIXTURES, harness, request, json, waitFor, type Harness } from './helpers.ts';

const NODE_DIR = join(FIXTURES, 'node');
let h: Harness;

before(async () => {
  h = await harness();
  await h.apply({
    node: { type: 'external', executable: process.execPath, arguments: ['http_app.cjs'], working_directory: NODE_DIR, environment: { GREETING: 'hey' } },
    express: { type: 'external', executable: process.execPath, arguments: ['express_app.cjs'], working_directory: NODE_DIR },
    esm: { type: 'external', executable: process.execPath, arguments: [join(NODE_DIR, 'express_esm.mjs')] },
    envnode: { type: 'external', executable: '/usr/bin/env', arguments: ['node', 'http_app.cjs'], working_directory: NODE_DIR },
    py: { type: 'external', executable: 'listen_fds_server.py', arguments: ['-x'], working_directory: join(FIXTURES, 'python') },
    timed: { type: 'external', executable: process.execPath, arguments: ['http_app.cjs'], working_directory: NODE_DIR, limits: { timeout: 1 } },
  }, (req) => {
    const m = /^\/_(\w+)(\/.*)?$/.exec(req.url ?? '');
    req.url = m?.[2] ?? '/';
    return { app: m?.[1] ?? 'node' };
  });
});

after(async () => { await h.close(); });

test('an unmodified node:http app serves through the preload; connections are reused', async () => {
  const info = await json(`${h.front.url}/_node/pid`);
  assert.ok(h.host.children.has(info.pid));
  assert.deepEqual(info.address, { address: '127.0.0.1', family: 'IPv4', port: 8123 });
  assert.equal(info.env.GREETING, 'hey');
  assert.equal(info.env.LISTEN_FDS, null);
  for (let i = 0; i < 5; i++) await request(`${h.front.url}/_node/`);
  const again = await json(`${h.front.url}/_node/pid`);
  assert.equal(again.connections, 1, 'one kept-alive connection for all requests');
});

test('fields: client fields pass minus hop-by-hop ones; response repeats kept, Server dropped', async () => {
  const r = await request(`${h.front.url}/_node/headers?q=1`, {
    headers: ['Host', 'x', 'X-Test', 'a', 'X-Test', 'b', 'Connection', 'keep-alive, X-Drop', 'X-Drop', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers'],
  });
  assert.equal(r.status, 200);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers.server, undefined);
  assert.equal(r.headers['x-custom'], 'yes');
  assert.ok(r.headers.date);
  const body = JSON.parse(r.text);
  assert.equal(body.url, '/headers?q=1');
  const names = (body.rawHeaders as string[]).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.deepEqual((body.rawHeaders as string[]).filter((_, i, a) => i % 2 === 1 && a[i - 1] === 'X-Test'), ['a', 'b']);
  for (const n of ['x-drop', 'keep-alive', 'te']) assert.ok(!names.includes(n), n);
  assert.ok(names.includes('host'));
});

test('bodies stream both ways', async () => {
  const body = Buffer.alloc(4 * 1024 * 1024 + 3, 0x41);
  const r = await request(`${h.front.url}/_node/echo`, { method: 'POST', body });
  assert.equal(r.headers['x-length'], String(body.length));
  assert.equal(r.body.length, body.length);
  const s = await request(`${h.front.url}/_node/stream`);
  assert.equal(s.text, 'part0\npart1\npart2\n');
});

test('the app dying before its response head → 503; after it → truncated, closed; then a replacement serves', async () => {
  const first = (await json(`${h.front.url}/_node/pid`)).pid;
  const r = await request(`${h.front.url}/_node/die`);
  assert.equal(r.status, 503);
  await waitFor(async () => (await json(`${h.front.url}/_node/pid`)).pid !== first, 10_000, 'replacement');
  const c = await request(`${h.front.url}/_node/crash`);
  assert.equal(c.status, 200);
  assert.equal(c.complete, false);
  assert.equal(c.text, 'partial');
  await waitFor(async () => (await request(`${h.front.url}/_node/`)).text === 'hello from node', 10_000, 'served again');
});

test('Express (CommonJS and ESM) calling app.listen(3000), unmodified', async () => {
  assert.equal((await request(`${h.front.url}/_express/`)).text, 'Hello from Express\n');
  const echoed = await request(`${h.front.url}/_express/echo`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'round trip' });
  assert.equal(echoed.text, 'round trip');
  assert.equal((await request(`${h.front.url}/_esm/`)).text, 'Hello from ESM Express');
  await waitFor(() => h.rec.output.join('').includes('express listening on 3000'), 5000, 'ESM app saw its port');
});

test('/usr/bin/env node app.js is recognised as Node', async () => {
  const info = await json(`${h.front.url}/_envnode/pid`);
  assert.equal(info.address.port, 8123);
});

test('a non-Node program on LISTEN_FDS, executable relative to working_directory', async () => {
  const info = await json(`${h.front.url}/_py/p?q`);
  assert.equal(info.listen_pid, String(info.pid));
  assert.equal(info.path, '/p?q');
  assert.deepEqual(info.argv.slice(1), ['-x']);
  const r = await request(`${h.front.url}/_py/`);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers.server, undefined);
  const posted = await request(`${h.front.url}/_py/`, { method: 'POST', body: 'xyz' });
  assert.equal(posted.text, 'xyz');
});

test('limits.timeout on an HTTP app: 503, the process stays', async () => {
  const first = (await json(`${h.front.url}/_timed/pid`)).pid;
  const r = await request(`${h.front.url}/_timed/slow?ms=1500`);
  assert.equal(r.status, 503);
  assert.equal((await json(`${h.front.url}/_timed/pid`)).pid, first);
});

test('Upgrade requests pass through to the app (101, then raw bytes both ways)', async () => {
  const s = net.connect(h.front.port, '127.0.0.1');
  let got = '';
  s.on('data', (d) => { got += d.toString('latin1'); });
  s.write('GET /_node/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
  await waitFor(() => got.includes('\r\n\r\n'), 5000, '101');
  assert.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(got, /\r\nUpgrade: echo\r\n/i);
  s.write('ping');
  await waitFor(() => got.endsWith('echo:ping'), 5000, 'echo');
  s.destroy();
  await waitFor(() => h.manager.status().node.requests.active === 0, 5000, 'tunnel closed: ' + JSON.stringify(h.manager.status()));
});

test('a Unit-style Node configuration (unit-http loaders, require("unit-http")) runs as is', async (t) => {
  const u = await harness();
  t.after(() => u.close());
  await u.apply({
    app: {
      type: 'external', working_directory: NODE_DIR, executable: '/usr/bin/env',
      arguments: ['node', '--loader', 'unit-http/loader.mjs', '--require', 'unit-http/loader', 'unit_http_app.cjs'],
    },
  });
  const r = await request(`${u.front.url}/`);
  assert.equal(r.status, 200);
  assert.equal(r.text, 'written for Unit\n');
});

test('a request right after the only process was killed waits for the replacement (no 503)', async (t) => {
  const u = await harness();
  t.after(() => u.close());
  await u.apply({ app: { type: 'external', executable: process.execPath, arguments: ['http_app.cjs'], working_directory: NODE_DIR } });
  const first = (await json(`${u.front.url}/pid`)).pid;
  process.kill(first, 'SIGKILL');
  const r = await request(`${u.front.url}/pid`);
  assert.equal(r.status, 200, r.text);
  assert.notEqual(JSON.parse(r.text).pid, first);
});

test('a program that exits right after it starts is replaced with a growing delay, not in a tight loop', async (t) => {
  const u = await harness();
  t.after(() => u.close());
  await u.apply({ app: { type: 'external', executable: '/bin/false', processes: 2 } });
  await waitFor(() => u.rec.text().includes('"app" application processes exit right after they start; next start in'), 10_000, 'backoff warning');
  const exits = () => (u.rec.text().match(/app process \d+ exited with code 1/g) ?? []).length;
  const seen = exits();
  assert.ok(seen < 20, `only a handful of attempts before the backoff (${seen})`);
});

test('a client going away before the response aborts the request to the app', async () => {
  const before = h.manager.status().node.requests.active;
  const req = (await import('node:http')).request(`${h.front.url}/_node/slow?ms=60000`, { agent: false });
  req.on('error', () => {});
  req.end();
  await waitFor(() => h.manager.status().node.requests.active === before + 1, 10_000, 'request in flight');
  req.destroy();
  await waitFor(() => h.manager.status().node.requests.active === before, 10_000, 'request aborted');
});
