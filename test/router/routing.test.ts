import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { start, request, raw, one, parse, tmpdir, waitLines, TestApps, freePort, until } from './helpers.ts';
import type { AppRequest } from '../../src/apps/types.ts';

test('§14.29 response_headers of a step that passes on are not applied', async () => {
  const s = await start({
    routes: {
      first: [{ action: { pass: 'routes/second', response_headers: { 'X-Foo': '1' } } }],
      second: [{ action: { return: 200 } }],
    },
    listeners: { '*:8080': { pass: 'routes/first' } },
  });
  try {
    const r = one(await request(s.port, 'GET', '/'));
    assert.equal(r.status, 200);
    assert.equal(r.get('x-foo'), undefined);
  } finally { await s.stop(); }
});

test('§14.27 rewrite keeps the query and passes on', async () => {
  const s = await start({ routes: [
    { match: { uri: '/old' }, action: { rewrite: '/new?zz', pass: 'routes' } },
    { match: { uri: '/new', arguments: { a: '1' } }, action: { return: 204 } },
  ] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/old?a=1')).status, 204);
  } finally { await s.stop(); }
});

test('pass to applications: AppRequest fields and the app response', async () => {
  const apps = new TestApps();
  let seen: AppRequest | undefined;
  apps.targets.set('app', {
    serve(r) {
      seen = r;
      r.res.writeHead(200, ['Content-Type', 'text/plain', 'Server', 'app', 'X-App', 'yes', 'Content-Length', '5']);
      r.res.end('hello');
    },
  });
  apps.targets.set('app/t', { serve(r) { r.fail(503); } });
  const s = await start({
    applications: { app: { type: 'external' } },
    routes: [
      { match: { uri: '/t' }, action: { pass: 'applications/app/t' } },
      { match: { uri: '/dyn/*' }, action: { pass: 'applications/$arg_app' } },
      { action: { rewrite: '/re$uri', pass: 'applications/app' } },
    ],
  }, apps);
  try {
    const r = one(await request(s.port, 'GET', '/p%2Fq?x=1', ['Host: Example.com:80', 'X_Bad: 1']));
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers.map((h) => h[0]), ['Content-Type', 'X-App', 'Content-Length', 'Server', 'Date', 'Connection']);
    assert.equal(r.get('server'), 'Unit/1.35.0');
    assert.equal(r.body, 'hello');
    assert.ok(seen);
    assert.equal(seen.target, '/p%2Fq?x=1');
    assert.equal(seen.path, '/re/p/q');
    assert.equal(seen.query, 'x=1');
    assert.equal(seen.serverName, 'example.com');
    assert.equal(seen.remoteAddr, '127.0.0.1');
    assert.equal(seen.localAddr, '127.0.0.1');
    assert.equal(seen.localPort, String(s.port));
    assert.equal(seen.tls, false);
    assert.deepEqual(seen.rawHeaders, ['Host', 'Example.com:80', 'Connection', 'close']);
    assert.equal(one(await request(s.port, 'GET', '/t')).status, 503);
    assert.equal(one(await request(s.port, 'GET', '/dyn/x?app=app')).body, 'hello');
    assert.equal(one(await request(s.port, 'GET', '/dyn/x?app=nope')).status, 404);
  } finally { await s.stop(); }
});

test('app responses without length are chunked for 1.1, close-delimited for 1.0', async () => {
  const apps = new TestApps();
  apps.targets.set('app', {
    serve(r) {
      r.res.writeHead(200, { 'Content-Type': 'text/plain' });
      r.res.write('ab');
      r.res.end('cd');
    },
  });
  const s = await start({ applications: { app: {} }, routes: [{ action: { pass: 'applications/app' } }] }, apps);
  try {
    const text = await request(s.port, 'GET', '/');
    const r = one(text);
    assert.equal(r.get('transfer-encoding'), 'chunked');
    assert.equal(r.body, 'abcd');
    const old = await raw(s.port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const o = one(old);
    assert.equal(o.get('transfer-encoding'), undefined);
    assert.equal(o.get('connection'), undefined);
    assert.equal(o.body, 'abcd');
  } finally { await s.stop(); }
});

test('HTTP/1.0 keep-alive gets Connection: keep-alive', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    const rs = parse(await raw(s.port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n'));
    assert.equal(rs.length, 2);
    assert.equal(rs[0].get('connection'), 'keep-alive');
    assert.equal(rs[1].get('connection'), undefined);
  } finally { await s.stop(); }
});

test('§14.36 access_log default format', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'a.log');
  const s = await start({ routes: [{ action: { return: 200 } }], access_log: log });
  try {
    await request(s.port, 'GET', '/x?y');
    await request(s.port, 'GET', '/z', ['Referer: http://r/', 'User-Agent: ua/1']);
    const lines = await waitLines(log, 2);
    assert.match(lines[0], /^127\.0\.0\.1 - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET \/x\?y HTTP\/1\.1" 200 0 "-" "-"$/);
    assert.match(lines[1], /"GET \/z HTTP\/1\.1" 200 0 "http:\/\/r\/" "ua\/1"$/);
    assert.equal((fs.statSync(log).mode & 0o777), 0o600);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('access log: error page bytes, malformed requests, mid-header disconnects', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'a.log');
  const s = await start({ routes: [{ action: { return: 404 } }], access_log: log });
  try {
    await request(s.port, 'GET', '/');
    await raw(s.port, 'get / HTTP/1.1\r\n\r\n');
    await raw(s.port, 'GET / HT', '127.0.0.1', true);
    const lines = await waitLines(log, 3);
    assert.match(lines[0], /"GET \/ HTTP\/1\.1" 404 54 "-" "-"$/);
    assert.match(lines[1], /"-" 400 54 "-" "-"$/);
    assert.match(lines[2], /"-" 400 0 "-" "-"$/);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('§14.37/38 access_log object form: JSON format, if', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'a.log');
  const s = await start({ routes: [{ action: { return: 200 } }],
    access_log: { path: log, format: { s: '$status', u: '$uri', h: '$header_x' } } });
  try {
    await request(s.port, 'GET', '/', ['X: a"b']);
    assert.deepEqual(await waitLines(log, 1), ['{"s":"200","u":"/","h":"a\\"b"}']);
  } finally { await s.stop(); }
  const log2 = path.join(dir, 'b.log');
  const s2 = await start({ routes: [{ action: { return: 200 } }],
    access_log: { path: log2, format: '$uri', if: '!$cookie_sid' } });
  try {
    await request(s2.port, 'GET', '/one', ['Cookie: sid=1']);
    await request(s2.port, 'GET', '/two');
    assert.deepEqual(await waitLines(log2, 1), ['/two']);
  } finally { await s2.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('access_log reopen after rotation', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'a.log');
  const s = await start({ routes: [{ action: { return: 200 } }], access_log: log });
  try {
    await request(s.port, 'GET', '/1');
    await waitLines(log, 1);
    fs.renameSync(log, log + '.old');
    await s.router.reopenLogs();
    await request(s.port, 'GET', '/2');
    const lines = await waitLines(log, 1);
    assert.match(lines[0], /GET \/2 /);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('§12 status counters', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    await request(s.port, 'GET', '/');
    await raw(s.port, 'GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n');
    await raw(s.port, 'bad\r\n\r\n');
    await until(() => s.router.status().connections.closed === 3);
    const st = s.router.status();
    assert.equal(st.connections.accepted, 3);
    assert.equal(st.connections.closed, 3);
    assert.equal(st.connections.idle, 0);
    assert.equal(st.connections.active, 0);
    assert.equal(st.requests.total, 4);
  } finally { await s.stop(); }
});

test('§14.43 idle timeout: raw 408 then close, not logged', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'a.log');
  const s = await start({ routes: [{ action: { return: 200 } }], access_log: log, settings: { http: { idle_timeout: 1, server_version: false } } });
  try {
    const text = await raw(s.port, []);
    const lines = text.split('\r\n');
    assert.equal(lines[0], 'HTTP/1.1 408 Request Timeout');
    assert.equal(lines[1], 'Server: Unit/1.35.0');
    assert.equal(lines[2], 'Connection: close');
    assert.equal(lines[3], 'Content-Length: 0');
    assert.match(lines[4], /^Date: /);
    assert.equal(text.endsWith('\r\n\r\n'), true);
    await request(s.port, 'GET', '/after');
    const logged = await waitLines(log, 1);
    assert.equal(logged.length, 1);
    assert.match(logged[0], /GET \/after/);
    const st = s.router.status();
    assert.equal(st.connections.idle, 0);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('apply: swap keeps sockets, removes listeners, failures leave the old table', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    // Keep-alive connection accepted under the first table.
    const pool = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (p: number) => new Promise<number>((resolve, reject) => {
      http.get({ port: p, host: '127.0.0.1', path: '/', agent: pool }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); }).on('error', reject);
    });
    assert.equal(await get(s.port), 200);
    const port2 = await freePort();
    await s.router.apply({ listeners: { [s.listener]: { pass: 'routes' }, [`127.0.0.1:${port2}`]: { pass: 'routes' } },
      routes: [{ action: { return: 201 } }] });
    assert.equal(await get(s.port), 200, 'an accepted connection keeps its table');
    assert.equal(one(await request(s.port, 'GET', '/')).status, 201);
    assert.equal(one(await request(port2, 'GET', '/')).status, 201);
    pool.destroy();
    // A failing apply: a listener without pass.
    await assert.rejects(s.router.apply({ listeners: { [s.listener]: {} }, routes: [] }));
    assert.equal(s.apps.aborted, 1);
    assert.equal(one(await request(s.port, 'GET', '/')).status, 201);
    // A step without action.
    await assert.rejects(s.router.apply({ listeners: { [s.listener]: { pass: 'routes' } }, routes: [{ match: {} }] }));
    // Bind failure: the new listener address is taken; nothing changes.
    await assert.rejects(s.router.apply({ listeners: { [s.listener]: { pass: 'routes' }, '192.0.2.1:80': { pass: 'routes' } }, routes: [] }));
    assert.equal(one(await request(port2, 'GET', '/')).status, 201);
    // Removing a listener releases it.
    await s.router.apply({ listeners: { [s.listener]: { pass: 'routes' } }, routes: [{ action: { return: 202 } }] });
    assert.deepEqual(s.host.released, [`127.0.0.1:${port2}`]);
    await assert.rejects(request(port2, 'GET', '/'));
    assert.equal(one(await request(s.port, 'GET', '/')).status, 202);
  } finally { await s.stop(); }
});

test('listeners: IPv6 and unix sockets', async () => {
  const dir = tmpdir();
  const sock = path.join(dir, 's.sock');
  const port6 = await freePort('::1');
  const s = await start({ listeners: { '*:8080': { pass: 'routes' }, [`[::1]:${port6}`]: { pass: 'routes' }, [`unix:${sock}`]: { pass: 'routes' } },
    routes: [{ action: { return: 301, location: '$remote_addr' } }] });
  try {
    assert.equal(one(await raw(port6, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n', '::1')).get('location'), '::1');
    assert.equal(one(await raw(0, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n', sock)).get('location'), 'unix:');
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('graceful shutdown lets an in-flight request finish', async () => {
  const apps = new TestApps();
  let release: () => void = () => {};
  const arrived = new Promise<void>((resolve) => {
    apps.targets.set('slow', { serve(r) { resolve(); release = () => { r.res.writeHead(200, {}); r.res.end('done'); }; } });
  });
  const s = await start({ applications: { slow: {} }, routes: [{ action: { pass: 'applications/slow' } }] }, apps);
  const pending = raw(s.port, 'GET / HTTP/1.1\r\n\r\n');
  await arrived;
  const down = s.router.shutdown(true);
  release();
  const r = one(await pending);
  assert.equal(r.body, 'done');
  assert.equal(r.get('connection'), 'close');
  await down;
});

test('settings.http.log_route: request line, steps selected and discarded, rewrites and fallbacks in the error log', async () => {
  const s = await start({
    routes: [
      { match: { uri: '/nope' }, action: { return: 204 } },
      { match: { uri: '/old/*' }, action: { rewrite: '/new', pass: 'routes' } },
      { match: { uri: '/new' }, action: { share: '/nonexistent-dir$uri', fallback: { return: 200 } } },
    ],
    settings: { http: { log_route: true } },
  });
  try {
    const r = one(await request(s.port, 'GET', '/old/x?q=1'));
    assert.equal(r.status, 200);
    const lines = s.host.log.lines;
    assert.deepEqual(lines.filter((l) => !l.startsWith('[alert]') && !l.includes('router started')), [
      '[notice] http request line "GET /old/x?q=1 HTTP/1.1"',
      '[info] "routes/0" discarded',
      '[notice] "routes/1" selected',
      '[notice] URI rewritten to "/new"',
      '[info] "routes/0" discarded',
      '[info] "routes/1" discarded',
      '[notice] "routes/2" selected',
      '[notice] "fallback" taken',
    ]);
  } finally { await s.stop(); }
});
