/**
 * Python ASGI through the launcher and the app protocol (spec/applications.md
 * §4.3): http and websocket scopes, streaming both ways, http.disconnect,
 * WebSocket accept/deny/close codes/subprotocols with a real WebSocket client,
 * lifespan (state, startup failure, shutdown), legacy ASGI 2, protocol
 * detection and forcing, threads with one event loop each.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { FIXTURES, harness, request, json, runDir, waitFor, type Harness } from './helpers.ts';

const PY = join(FIXTURES, 'python');
let h: Harness;
const run = runDir();
const shutdownFile = join(run.path, 'shutdown.txt');

before(async () => {
  h = await harness();
  await h.apply({
    asgi: { type: 'python', path: PY, module: 'asgi_app', callable: 'app', environment: { ASGI_SHUTDOWN_FILE: shutdownFile } },
    prefixed: { type: 'python', path: PY, module: 'asgi_app', callable: 'app', prefix: '/api/' },
    targets: {
      type: 'python', path: PY,
      targets: { one: { module: 'asgi_app', callable: 'app' }, two: { module: 'asgi_app', callable: 'second', prefix: '/two' } },
    },
    legacy: { type: 'python', path: PY, module: 'asgi_variants', callable: 'legacy' },
    legacyClass: { type: 'python', path: PY, module: 'asgi_variants', callable: 'LegacyClass', protocol: 'asgi' },
    raises: { type: 'python', path: PY, module: 'asgi_variants', callable: 'lifespan_raises' },
    returns: { type: 'python', path: PY, module: 'asgi_variants', callable: 'lifespan_returns' },
    badTransition: { type: 'python', path: PY, module: 'asgi_variants', callable: 'bad_transition' },
    forcedWsgi: { type: 'python', path: PY, module: 'asgi_variants', callable: 'wsgi_one_arg', protocol: 'wsgi' },
    threaded: { type: 'python', path: PY, module: 'asgi_app', callable: 'app', threads: 3 },
  }, (req) => {
    const m = /^\/_(\w+)(?:\.(\w+))?(\/.*)?$/.exec(req.url ?? '');
    if (m) {
      req.url = m[3] ?? '/';
      return { app: m[1], target: m[2] };
    }
    return { app: 'asgi' };
  });
});

after(async () => {
  await h.close();
  run.remove();
});

/** Send `text` as is; the parsed JSON body of the answer. */
function raw(port: number, text: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => {
      const all = Buffer.concat(parts).toString('latin1');
      resolve(JSON.parse(all.slice(all.indexOf('\r\n\r\n') + 4)));
    });
    s.on('error', reject);
    s.write(text);
  });
}

/** A WebSocket client that queues what it gets from the start (messages can arrive with the 101). */
interface Client extends WebSocket {
  queue: { data: Buffer; binary: boolean }[];
  waiters: ((m: { data: Buffer; binary: boolean }) => void)[];
  closing: Promise<{ code: number; reason: string }>;
}

/** Open a WebSocket to the front server. */
function ws(path: string, protocols?: string[]): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new WebSocket(`ws://127.0.0.1:${h.front.port}${path}`, protocols) as Client;
    c.queue = [];
    c.waiters = [];
    c.on('message', (data: Buffer, binary: boolean) => {
      const w = c.waiters.shift();
      if (w) w({ data, binary });
      else c.queue.push({ data, binary });
    });
    c.closing = new Promise((done) => c.once('close', (code: number, reason: Buffer) => done({ code, reason: reason.toString() })));
    c.once('open', () => resolve(c));
    c.once('error', reject);
  });
}

/** The next message of `c`. */
function message(c: Client): Promise<{ data: Buffer; binary: boolean }> {
  const m = c.queue.shift();
  if (m) return Promise.resolve(m);
  return new Promise((resolve) => c.waiters.push(resolve));
}

/** The close code and reason `c` gets. */
function closed(c: Client): Promise<{ code: number; reason: string }> {
  return c.closing;
}

/** The status line and fields a WebSocket handshake gets when it is not accepted. */
function handshake(path: string): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(h.front.port, '127.0.0.1');
    let text = '';
    s.on('data', (d) => { text += d.toString('latin1'); });
    s.on('close', () => resolve({ status: Number(text.slice(9, 12)), head: text }));
    s.on('error', reject);
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  });
}

const text = (v: { bytes: string }) => v.bytes;

test('http scope: exactly the keys and values of §4.3 (§9 check 34)', async () => {
  const { scope } = await raw(h.front.port,
    'POST /a%20b/./c?x=1&y HTTP/1.1\r\nHost: Example.COM:8080\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  assert.deepEqual(Object.keys(scope).sort(), ['asgi', 'client', 'headers', 'http_version', 'method', 'path', 'query_string',
    'raw_path', 'scheme', 'server', 'state', 'type']);
  assert.equal(scope.type, 'http');
  assert.deepEqual(scope.asgi, { version: '3.0', spec_version: '2.1' });
  assert.equal(scope.http_version, '1.1');
  assert.equal(scope.method, 'POST');
  assert.equal(scope.scheme, 'http');
  assert.equal(scope.path, '/a b/c');
  assert.equal(text(scope.raw_path), '/a%20b/./c');
  assert.equal(text(scope.query_string), 'x=1&y');
  assert.deepEqual(scope.client, ['127.0.0.1', 0]);
  assert.deepEqual(scope.server, ['127.0.0.1', h.front.port]);
  // Lower-case names, arrival order, repeats not joined.
  assert.deepEqual(scope.headers.map((p: { bytes: string }[]) => p.map(text)),
    [['host', 'Example.COM:8080'], ['x-a', '1'], ['x-a', '2'], ['content-length', '0'], ['connection', 'close']]);
  assert.deepEqual(scope.state, { thread: scope.state.thread, started: true });
  const v10 = await raw(h.front.port, 'GET /scope HTTP/1.0\r\n\r\n');
  assert.equal(v10.scope.http_version, '1.0');
  assert.equal(text(v10.scope.query_string), '');
  // Non-UTF-8 path bytes are replaced, raw_path keeps them.
  const bad = await json(`${h.front.url}/caf%E9`);
  assert.equal(bad.scope.path, '/caf\ufffd');
  const utf8 = await json(`${h.front.url}/caf%C3%A9`);
  assert.equal(utf8.scope.path, '/café');
});

test('root_path only when the prefix matches; the path keeps the prefix', async () => {
  const api = await json(`${h.front.url}/_prefixed/api/x`);
  assert.equal(api.scope.root_path, '/api');
  assert.equal(api.scope.path, '/api/x');
  const exact = await json(`${h.front.url}/_prefixed/api`);
  assert.equal(exact.scope.root_path, '/api');
  const other = await json(`${h.front.url}/_prefixed/apix/scope`);
  assert.ok(!('root_path' in other.scope));
  const second = await json(`${h.front.url}/_targets.two/two/y`);
  assert.deepEqual(second, { root_path: '/two', path: '/two/y', state: { target: 'second' } });
  const first = await json(`${h.front.url}/_targets/scope`);
  assert.equal(first.scope.state.started, true);
});

test('lifespan state: each request gets a shallow copy', async () => {
  const a = await json(`${h.front.url}/state`);
  assert.equal(a.state.started, true);
  assert.ok(!('mutated' in a.state));
  const b = await json(`${h.front.url}/state`);
  assert.ok(!('mutated' in b.state));
});

test('request body: streamed in chunks with more_body, the last one False', async () => {
  const size = 3 * 1024 * 1024 + 5;
  const r = await json(`${h.front.url}/body`, { method: 'POST', body: Buffer.alloc(size, 0x61) });
  assert.equal(r.size, size);
  assert.deepEqual(r.flags, [false]);
  const none = await json(`${h.front.url}/body`);
  assert.deepEqual(none, { size: 0, flags: [false], text: '' });
  const chunked = await json(`${h.front.url}/body`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' }, body: 'hello' });
  assert.equal(chunked.text, 'hello');
});

test('streaming both ways: chunks echoed while the body still arrives; large responses', async () => {
  const body = Buffer.alloc(2 * 1024 * 1024 + 3, 0x62);
  const r = await request(`${h.front.url}/echo`, { method: 'POST', body });
  assert.equal(r.status, 200);
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  assert.ok(r.body.equals(body));
  const s = await request(`${h.front.url}/stream`);
  assert.equal(s.text, 'chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n');
  const big = await request(`${h.front.url}/big?5000000`);
  assert.equal(big.body.length, 5_000_000);
  assert.equal(big.headers['content-length'], '5000000');
});

test('receive() after the body waits for http.disconnect; after the response it returns at once', async () => {
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(h.front.port, '127.0.0.1');
    s.on('data', (d) => { if (d.toString().includes('first')) s.destroy(); });
    s.on('close', () => resolve());
    s.on('error', reject);
    s.write('GET /disconnect HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  await waitFor(async () => (await json(`${h.front.url}/events`)).some((e: any) => e.path === '/disconnect'), 10_000, 'http.disconnect');
  const events = await json(`${h.front.url}/events`);
  assert.deepEqual(events.find((e: any) => e.path === '/disconnect'), { path: '/disconnect', message: 'http.disconnect' });
  assert.equal((await request(`${h.front.url}/after-complete`)).text, 'done');
  await waitFor(async () => (await json(`${h.front.url}/events`)).some((e: any) => e.path === '/after-complete'), 10_000, 'after-complete');
});

test('response: repeated fields kept, Server dropped, Latin-1, bytearray bodies', async () => {
  const r = await request(`${h.front.url}/headers`);
  assert.equal(r.status, 201);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers.server, undefined);
  assert.equal(r.rawHeaders[r.rawHeaders.indexOf('x-latin') + 1], 'caf\xe9');
  assert.equal(r.text, 'ok');
});

test('errors: exception → 503 and Unit\'s log lines; after the first chunk → truncated', async () => {
  const r = await request(`${h.front.url}/raise`);
  assert.equal(r.status, 503);
  await waitFor(() => /\[error\] \d+#\d+ \[unit\] #\d+: Python failed to call 'future\.result\(\)'\n/.test(h.rec.text()), 5000, 'error line');
  assert.match(h.rec.text(), /RuntimeError: boom before the response/);
  const after = await request(`${h.front.url}/raise-after`);
  assert.equal(after.status, 200);
  assert.equal(after.text, 'x');
  assert.equal(after.complete, false);
  assert.equal((await request(`${h.front.url}/too-long`)).status, 503);
  await waitFor(() => h.rec.text().includes('Response content longer than Content-Length'), 5000);
  assert.equal((await request(`${h.front.url}/bad-status`)).status, 503);
  await waitFor(() => h.rec.text().includes("'status' is not an integer"), 5000);
  assert.equal((await request(`${h.front.url}/bad-header`)).status, 503);
  await waitFor(() => h.rec.text().includes("'headers' item #0 'name' is not a byte string"), 5000);
});

test('no response → 200 text/plain empty; start only → the head with an empty body; body after the end → RuntimeError', async () => {
  const nothing = await request(`${h.front.url}/nothing`);
  assert.equal(nothing.status, 200);
  assert.equal(nothing.headers['content-type'], 'text/plain');
  assert.equal(nothing.body.length, 0);
  const start = await request(`${h.front.url}/start-only`);
  assert.equal(start.status, 204);
  assert.equal(start.headers['x-only'], 'start');
  assert.equal((await request(`${h.front.url}/twice`)).text, 'one');
  await waitFor(async () => (await json(`${h.front.url}/events`)).some((e: any) => e.path === '/twice'), 5000);
  const ev = (await json(`${h.front.url}/events`)).find((e: any) => e.path === '/twice');
  assert.match(ev.error, /after response already completed/);
});

test('websocket scope: ws scheme, no method, subprotocols parsed', async () => {
  const c = await ws('/ws/scope?q=1', ['one', 'two']);
  assert.equal(c.protocol, 'two');
  const { data } = await message(c);
  const scope = JSON.parse(data.toString());
  assert.equal(scope.type, 'websocket');
  assert.equal(scope.scheme, 'ws');
  assert.ok(!('method' in scope));
  assert.deepEqual(scope.subprotocols, ['one', 'two']);
  assert.deepEqual(scope.asgi, { version: '3.0', spec_version: '2.1' });
  assert.equal(scope.path, '/ws/scope');
  assert.equal(text(scope.query_string), 'q=1');
  assert.equal(scope.state.started, true);
  assert.equal((await closed(c)).code, 1000);
  const plain = await ws('/ws/scope');
  const p = JSON.parse((await message(plain)).data.toString());
  assert.ok(!('subprotocols' in p));
  await closed(plain);
});

test('websocket echo: text and binary messages both ways, large messages, client close code reaches the app', async () => {
  const c = await ws('/ws/echo');
  c.send('héllo');
  let m = await message(c);
  assert.equal(m.binary, false);
  assert.equal(m.data.toString(), 'héllo');
  c.send(Buffer.from([0, 1, 2, 255]));
  m = await message(c);
  assert.equal(m.binary, true);
  assert.deepEqual([...m.data], [0, 1, 2, 255]);
  const big = Buffer.alloc(900_000, 7);
  c.send(big);
  m = await message(c);
  assert.ok(m.data.equals(big));
  const done = closed(c);
  c.close(4321, 'client says bye');
  assert.equal((await done).code, 4321);
  await waitFor(async () => (await json(`${h.front.url}/events`)).some((e: any) => e.ws === '/ws/echo' && e.code === 4321), 5000, 'disconnect 4321');
});

test('websocket: a lost connection is websocket.disconnect 1001; messages from the app larger than a frame', async () => {
  const c = await ws('/ws/big');
  const m = await message(c);
  assert.equal(m.data.length, 256_000);
  assert.equal(m.data[255], 255);
  c.terminate();
  await waitFor(async () => (await json(`${h.front.url}/events`)).some((e: any) => e.ws === '/ws/big' && e.code === 1001), 5000, 'disconnect 1001');
});

test('websocket: app close code and reason, accept headers, return and exception close codes', async () => {
  const c = await ws('/ws/close');
  assert.deepEqual(await closed(c), { code: 4000, reason: 'bye' });
  const withHeaders = new WebSocket(`ws://127.0.0.1:${h.front.port}/ws/headers`);
  const upgrade = await new Promise<Record<string, unknown>>((resolve) => withHeaders.once('upgrade', (res) => resolve(res.headers)));
  assert.equal(upgrade['x-extra'], 'yes');
  assert.equal(upgrade.server, 'Unit/1.35.0');
  withHeaders.close();
  const ret = await ws('/ws/return');
  assert.equal((await message(ret)).data.toString(), 'bye');
  assert.equal((await closed(ret)).code, 1000);
  const raised = await ws('/ws/raise');
  assert.equal((await closed(raised)).code, 1011);
  await waitFor(() => h.rec.text().includes('RuntimeError: boom after accept'), 5000);
});

test('websocket denial: close before accept → 403; no accept at all → 403; exception before accept → 503', async () => {
  const denied = await handshake('/ws/deny');
  assert.equal(denied.status, 403);
  assert.match(denied.head, /\r\nServer: Unit\/1\.35\.0\r\n/);
  assert.equal((await handshake('/ws/nothing')).status, 403);
  assert.equal((await handshake('/ws/raise-before')).status, 503);
});

test('a WebSocket handshake to a WSGI application is an ordinary request', async () => {
  const r = await handshake('/_forcedWsgi/ws');
  assert.equal(r.status, 200);
  assert.match(r.head, /\r\nServer: Unit\/1\.35\.0\r\n/);
  assert.match(r.head, /\r\n\r\nb\r\nwsgi forced\r\n0\r\n\r\n$/);
});

test('legacy ASGI 2: a one-argument function, detected; a class with protocol "asgi"', async () => {
  const r = await request(`${h.front.url}/_legacy/x`);
  assert.equal(r.text, 'legacy {"type": "http", "path": "/x", "state": []}');
  assert.equal((await request(`${h.front.url}/_legacyClass/`)).text, 'legacy class');
  assert.equal((await request(`${h.front.url}/_forcedWsgi/`)).text, 'wsgi forced');
});

test('lifespan that raises or returns is disabled (info line), the app serves; a bad transition warns', async () => {
  assert.equal((await request(`${h.front.url}/_raises/`)).text, 'served without lifespan []');
  assert.equal((await request(`${h.front.url}/_returns/`)).text, 'served');
  assert.match(h.rec.text(), /\[info\] \d+#\d+ \[unit\] ASGI Lifespan processing exception\n/);
  assert.match(h.rec.text(), /ValueError: only http here, not lifespan/);
  assert.equal((await request(`${h.front.url}/_badTransition/`)).text, 'served after a bad transition');
  assert.match(h.rec.text(), /\[warn\] \d+#\d+ \[unit\] Got invalid state transition on lifespan protocol\n/);
  assert.match(h.rec.text(), /AssertionError: Got invalid state transition on lifespan protocol/);
});

test('threads: one event loop per thread, each with its own lifespan; concurrent requests spread over them', async () => {
  const counts = await json(`${h.front.url}/_threaded/startups`);
  assert.deepEqual(counts, { startups: 3, threads: 3 });
  const held = await Promise.all([1, 2, 3].map(() => json(`${h.front.url}/_threaded/hold?3`)));
  assert.equal(new Set(held.map((x) => x.thread)).size, 3);
  assert.equal(new Set(held.map((x) => x.loop)).size, 3);
  // WebSockets on every loop: their frames cross from the loop that reads the connection.
  const clients = await Promise.all([1, 2, 3, 4].map(() => ws('/_threaded/ws/echo')));
  clients.forEach((c, i) => c.send(`m${i}`.repeat(50_000)));
  const echoes = await Promise.all(clients.map((c) => message(c)));
  echoes.forEach((m, i) => assert.equal(m.data.toString(), `m${i}`.repeat(50_000)));
  for (const c of clients) c.close(4002);
  for (const c of clients) assert.equal((await closed(c)).code, 4002);
});

test('lifespan.startup.failed: "Application startup failed" and the message; the process does not start', async () => {
  const h2 = await harness();
  try {
    await assert.rejects(h2.apply({ failing: { type: 'python', path: PY, module: 'asgi_variants', callable: 'startup_fails' } }));
    const log = h2.rec.text();
    assert.match(log, /\[error\] \d+#\d+ \[unit\] Application startup failed\n/);
    assert.match(log, /\[error\] \d+#\d+ \[unit\] the database is gone\n/);
    assert.match(log, /failed to start application "failing"/);
  } finally {
    await h2.close();
  }
});

test('a mix of ASGI and WSGI targets is refused', async () => {
  const h2 = await harness();
  try {
    await assert.rejects(h2.apply({
      mixed: { type: 'python', path: PY, targets: { a: { module: 'asgi_variants', callable: 'asgi_target' }, w: { module: 'asgi_variants', callable: 'wsgi_target' } } },
    }));
    assert.match(h2.rec.text(), /\[alert\] \d+#\d+ \[unit\] A mix of ASGI & WSGI targets is forbidden/);
  } finally {
    await h2.close();
  }
});

test('lifespan shutdown runs when the process stops', async () => {
  const h2 = await harness();
  const file = join(run.path, 'shutdown2.txt');
  await h2.apply({ app: { type: 'python', path: PY, module: 'asgi_app', callable: 'app', environment: { ASGI_SHUTDOWN_FILE: file } } });
  const { pid } = await json(`${h2.front.url}/scope`);
  await h2.manager.shutdown(true);
  await waitFor(() => existsSync(file), 10_000, 'shutdown file');
  assert.equal(readFileSync(file, 'utf8'), `shutdown ${pid}\n`);
  await h2.close();
});
