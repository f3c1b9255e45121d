/**
 * Real Python frameworks behind the real daemon and router, from Debian's
 * packages: Flask (WSGI), one Django project served both as WSGI and as ASGI
 * (a CSRF-protected form and a static page), Starlette (ASGI, with a
 * WebSocket echo driven by a real WebSocket client through the router).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { FIXTURES, Junction, freePort, get, request, waitFor, type Response } from './harness.ts';

const PY = path.join(FIXTURES, 'python');

/** Cookie pairs (`name=value`) of a response. */
function cookies(r: Response): string[] {
  const set = r.headers['set-cookie'] ?? [];
  return set.map((c) => c.split(';')[0]);
}

/** A WebSocket client whose messages are queued from the start. */
function connect(url: string, protocols?: string[]): Promise<{ c: WebSocket; next(): Promise<{ data: Buffer; binary: boolean }>; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const c = new WebSocket(url, protocols);
    const queue: { data: Buffer; binary: boolean }[] = [];
    const waiters: ((m: { data: Buffer; binary: boolean }) => void)[] = [];
    c.on('message', (data: Buffer, binary: boolean) => {
      const w = waiters.shift();
      if (w) w({ data, binary });
      else queue.push({ data, binary });
    });
    const closed = new Promise<number>((done) => c.once('close', (code: number) => done(code)));
    const next = () => {
      const m = queue.shift();
      return m ? Promise.resolve(m) : new Promise<{ data: Buffer; binary: boolean }>((r) => waiters.push(r));
    };
    c.once('open', () => resolve({ c, next, closed }));
    c.once('error', reject);
  });
}

describe('Python frameworks through the daemon', () => {
  let j: Junction;
  const port: Record<string, number> = {};

  before(async () => {
    j = await Junction.start();
    for (const name of ['flask', 'djwsgi', 'djasgi', 'starlette', 'asgi']) port[name] = await freePort();
    const listeners: Record<string, unknown> = {};
    for (const [name, p] of Object.entries(port)) listeners[`127.0.0.1:${p}`] = { pass: `applications/${name}` };
    await j.configure({
      listeners,
      applications: {
        flask: { type: 'python', path: PY, module: 'flask_app', callable: 'app' },
        djwsgi: { type: 'python', path: path.join(PY, 'djsite'), module: 'djsite.wsgi' },
        djasgi: { type: 'python 3', path: [path.join(PY, 'djsite')], module: 'djsite.asgi' },
        starlette: { type: 'python', path: PY, module: 'starlette_app', callable: 'app', threads: 2 },
        asgi: { type: 'python', path: PY, module: 'asgi_app', callable: 'app' },
      },
    });
  });

  after(async () => { await j.cleanup(); });

  test('Flask: routes, JSON bodies, cookies, 404', async () => {
    const hello = await get(port.flask, '/');
    assert.equal(hello.status, 200);
    assert.equal(hello.body, 'Hello from Flask');
    assert.equal(hello.headers.server, 'Unit/1.35.0');
    const posted = await request({ host: '127.0.0.1', port: port.flask, path: '/json', method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"a":[1,2]}' });
    assert.deepEqual(JSON.parse(posted.body), { received: { a: [1, 2] }, method: 'POST', path: '/json', script_root: '', remote: '127.0.0.1' });
    const user = await get(port.flask, '/user/ann?x=1');
    assert.deepEqual(JSON.parse(user.body), { name: 'ann', args: { x: '1' } });
    assert.deepEqual(cookies(user), ['seen=1']);
    assert.equal((await get(port.flask, '/missing')).status, 404);
  });

  for (const [name, kind] of [['djwsgi', 'WSGIRequest'], ['djasgi', 'ASGIRequest']] as const) {
    test(`Django as ${name === 'djwsgi' ? 'WSGI' : 'ASGI'}: a CSRF-protected form, a static page, request details`, async () => {
      const p = port[name];
      const form = await get(p, '/form/');
      assert.equal(form.status, 200);
      const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(form.body)?.[1];
      assert.ok(token, 'the form carries a CSRF token');
      const cookie = cookies(form).find((c) => c.startsWith('csrftoken='));
      assert.ok(cookie, 'the CSRF cookie is set');
      const body = `csrfmiddlewaretoken=${encodeURIComponent(token!)}&name=Ann+%C3%89`;
      const ok = await request({ host: '127.0.0.1', port: p, path: '/form/', method: 'POST', body,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookie! } });
      assert.equal(ok.status, 200);
      assert.match(ok.body, /Hello, Ann É!/);
      const refused = await request({ host: '127.0.0.1', port: p, path: '/form/', method: 'POST', body: 'name=Eve',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      assert.equal(refused.status, 403);
      const page = await get(p, '/static/page.txt');
      assert.equal(page.status, 200);
      assert.equal(page.body, 'A static page served by Django.\n');
      const info = JSON.parse((await get(p, '/info/?a=1', { Host: 'example.com:8080' })).body);
      assert.deepEqual(info, { path: '/info/', path_info: '/info/', script_name: '', method: 'GET', secure: false,
        host: 'example.com:8080', remote: '127.0.0.1', query: { a: '1' }, server: kind });
      assert.equal((await get(p, '/nope/')).status, 404);
    });
  }

  test('Starlette: lifespan ran, sync endpoints in threads, uploads, streaming', async () => {
    const home = JSON.parse((await get(port.starlette, '/?q=1')).body);
    assert.equal(home.path, '/');
    assert.deepEqual(home.query, { q: '1' });
    assert.equal(home.client, '127.0.0.1');
    assert.ok(home.started >= 1);
    assert.equal((await get(port.starlette, '/sync')).body, 'from a worker thread');
    const up = await request({ host: '127.0.0.1', port: port.starlette, path: '/upload', method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: Buffer.alloc(200_000, 1) });
    assert.deepEqual(JSON.parse(up.body), { size: 200_000, type: 'application/octet-stream' });
    const s = await get(port.starlette, '/stream');
    assert.equal(s.body, 'part 0\npart 1\npart 2\n');
    assert.equal(s.headers['transfer-encoding'], 'chunked');
  });

  test('Starlette WebSocket echo through the router with a real client: subprotocol, text, binary, close code', async () => {
    const { c, next, closed } = await connect(`ws://127.0.0.1:${port.starlette}/ws`, ['echo']);
    assert.equal(c.protocol, 'echo');
    c.send('hello');
    assert.equal((await next()).data.toString(), 'echo: hello');
    c.send(Buffer.from([1, 2, 3]));
    const b = await next();
    assert.equal(b.binary, true);
    assert.deepEqual([...b.data], [3, 2, 1]);
    c.send('close');
    assert.equal(await closed, 4001);
    // Many clients at once.
    const many = await Promise.all(Array.from({ length: 20 }, () => connect(`ws://127.0.0.1:${port.starlette}/ws`)));
    many.forEach((m, i) => m.c.send(`n${i}`));
    const answers = await Promise.all(many.map((m) => m.next()));
    answers.forEach((a, i) => assert.equal(a.data.toString(), `echo: n${i}`));
    for (const m of many) m.c.close();
    await Promise.all(many.map((m) => m.closed));
  });

  test('ASGI WebSocket through the router: denial is 403, a client close code reaches the app', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const s = net.connect(port.asgi, '127.0.0.1');
      let text = '';
      s.on('data', (d) => { text += d; });
      s.on('close', () => resolve(Number(text.slice(9, 12))));
      s.on('error', reject);
      s.write('GET /ws/deny HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    assert.equal(status, 403);
    const { c, next, closed } = await connect(`ws://127.0.0.1:${port.asgi}/ws/echo`);
    c.send('ping');
    assert.equal((await next()).data.toString(), 'ping');
    c.close(4111);
    assert.equal(await closed, 4111);
    await waitFor(async () => JSON.parse((await get(port.asgi, '/events')).body)
      .some((e: { ws?: string; code?: number }) => e.ws === '/ws/echo' && e.code === 4111), 'websocket.disconnect 4111');
  });
});
