import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { start, request, raw, one, parse, freePort, tmpdir } from './helpers.ts';

/** A raw TCP backend: records each request head and answers with `reply`. */
async function rawBackend(reply: string): Promise<{ port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        heads.push(buf.slice(0, end));
        buf = '';
        s.end(reply);
      }
    });
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as net.AddressInfo).port, heads,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); srv.close(() => resolve()); }),
  };
}

/** An http backend answering with `status` and echoing method, url and body. */
async function echoBackend(status = 200, listen: number | string = 0): Promise<{ port: number; server: http.Server; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(status, { 'Content-Type': 'text/plain', 'X-Seen-Host': req.headers.host ?? '', 'X-Seen-Length': req.headers['content-length'] ?? '' });
      res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`);
    });
  });
  await new Promise<void>((resolve) => (typeof listen === 'string' ? server.listen(listen, resolve) : server.listen(0, '127.0.0.1', resolve)));
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : 0, server,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

test('§14.42 proxy: raw target, fields relayed, Server replaced, exact body length', async () => {
  const b = await rawBackend('HTTP/1.1 200 OK\r\nServer: foo\r\nContent-Length: 10\r\nX-B: 1\r\n\r\n0123456789abcde');
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${b.port}` } }] });
  try {
    const r = one(await request(s.port, 'GET', '/p%2Fq?x', ['X-Client: c']));
    assert.equal(r.status, 200);
    assert.equal(r.get('server'), 'Unit/1.35.0');
    assert.deepEqual(r.headers.map((h) => h[0]), ['Content-Length', 'X-B', 'Server', 'Date', 'Connection']);
    assert.equal(r.body, '0123456789');
    const head = b.heads[0].split('\r\n');
    assert.equal(head[0], 'GET /p%2Fq?x HTTP/1.1');
    assert.ok(head.includes('Host: localhost'));
    assert.ok(head.includes('X-Client: c'));
    assert.ok(!head.some((l) => /^x-forwarded/i.test(l)));
  } finally { await s.stop(); await b.close(); }
});

test('proxy: closed port → 502 error page; bad status line → 502', async () => {
  const port = await freePort();
  const b = await rawBackend('garbage\r\n\r\n');
  const s = await start({ routes: [
    { match: { uri: '/closed' }, action: { proxy: `http://127.0.0.1:${port}` } },
    { action: { proxy: `http://127.0.0.1:${b.port}` } },
  ] });
  try {
    const r = one(await request(s.port, 'GET', '/closed'));
    assert.equal(r.status, 502);
    assert.equal(r.get('content-length'), '54');
    assert.equal(one(await request(s.port, 'GET', '/bad')).status, 502);
    assert.ok(s.host.log.lines.some((l) => l.includes('upstream')));
  } finally { await s.stop(); await b.close(); }
});

test('proxy: bodies streamed both ways, chunked upstream re-framed, unix upstream, rewrite', async () => {
  const dir = tmpdir();
  const sock = path.join(dir, 'b.sock');
  const b = await echoBackend(201);
  const u = await echoBackend(200, sock);
  const s = await start({ routes: [
    { match: { uri: '/unix/*' }, action: { proxy: `http://unix:${sock}` } },
    { match: { uri: '/rw/*' }, action: { rewrite: '/new$uri', proxy: `http://127.0.0.1:${b.port}` } },
    { action: { proxy: `http://127.0.0.1:${b.port}` } },
  ], settings: { http: { chunked_transform: true } } });
  try {
    const r = one(await request(s.port, 'POST', '/echo?q=1', ['Content-Length: 5'], 'hello'));
    assert.equal(r.status, 201);
    assert.equal(r.body, 'POST /echo?q=1 hello');
    assert.equal(r.get('transfer-encoding'), 'chunked');
    assert.equal(one(await request(s.port, 'GET', '/unix/x')).body, 'GET /unix/x ');
    assert.equal(one(await request(s.port, 'GET', '/rw/a%20b?z=1')).body, 'GET /new/rw/a%20b?z=1 ');
    const c = one(await request(s.port, 'POST', '/c', ['Transfer-Encoding: chunked'], '5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n'));
    assert.equal(c.body, 'POST /c helloabc');
    // Keep-alive to the client across proxied requests.
    const two = parse(await raw(s.port, 'GET /k1 HTTP/1.1\r\nHost: a\r\n\r\nGET /k2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
    assert.deepEqual(two.map((x) => x.body), ['GET /k1 ', 'GET /k2 ']);
  } finally { await s.stop(); await b.close(); await u.close(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('proxy: upstream closing before Content-Length is reached closes the client connection', async () => {
  const b = await rawBackend('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort');
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${b.port}` } }] });
  try {
    const text = await raw(s.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(text.endsWith('short'));
  } finally { await s.stop(); await b.close(); }
});

test('§14.41 upstreams: smooth weighted round robin; empty or zero weights → 502', async () => {
  const b1 = await echoBackend(201);
  const b2 = await echoBackend(202);
  const s = await start({
    upstreams: {
      u: { servers: { [`127.0.0.1:${b1.port}`]: { weight: 3 }, [`127.0.0.1:${b2.port}`]: {} } },
      empty: { servers: {} },
      zero: { servers: { [`127.0.0.1:${b1.port}`]: { weight: 0 } } },
    },
    routes: [
      { match: { uri: '/empty' }, action: { pass: 'upstreams/empty' } },
      { match: { uri: '/zero' }, action: { pass: 'upstreams/zero' } },
      { action: { pass: 'upstreams/u' } },
    ],
  });
  try {
    let pipelined = '';
    for (let i = 0; i < 99; i++) pipelined += 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    pipelined += 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n';
    const rs = parse(await raw(s.port, pipelined));
    assert.equal(rs.length, 100);
    assert.equal(rs.filter((r) => r.status === 201).length, 75);
    assert.equal(rs.filter((r) => r.status === 202).length, 25);
    assert.deepEqual(rs.slice(0, 4).map((r) => r.status), [201, 201, 202, 201]);
    assert.equal(one(await request(s.port, 'GET', '/empty')).status, 502);
    assert.equal(one(await request(s.port, 'GET', '/zero')).status, 502);
  } finally { await s.stop(); await b1.close(); await b2.close(); }
});

test('upstream weights with fractions: 0.1 : 1 : 0.9 → 1 : 10 : 9', async () => {
  const { UpstreamHandler } = await import('../../src/router/upstream.ts');
  const u = new UpstreamHandler([], [0.1, 1, 0.9]);
  const counts = [0, 0, 0];
  for (let i = 0; i < 20; i++) counts[u.pick()]++;
  assert.deepEqual(counts, [1, 10, 9]);
});

/**
 * A raw TCP backend that answers every request head it reads with
 * `reply(n, i)` (n: its connection number from 1, i: the request number on
 * that connection from 1); a null reply closes the connection instead.
 */
async function scriptedBackend(reply: (conn: number, req: number, head: string) => string | null):
  Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let conns = 0;
  const srv = net.createServer((s) => {
    const n = ++conns;
    let i = 0;
    sockets.add(s);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const out = reply(n, ++i, head);
        if (out === null) { s.destroy(); return; }
        s.write(out);
      }
    });
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as net.AddressInfo).port,
    connections: () => conns,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); srv.close(() => resolve()); }),
  };
}

test('proxy: upstream connections are kept alive and reused; HEAD and 1xx keep the connection usable', async () => {
  const b = await scriptedBackend((_n, _i, head) => {
    if (head.startsWith('HEAD ')) return 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
    if (head.startsWith('GET /hints ')) {
      return 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints';
    }
    if (head.startsWith('GET /none ')) return 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n';
    return 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
  });
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${b.port}` } }] });
  try {
    for (let i = 0; i < 5; i++) assert.equal(one(await request(s.port, 'GET', `/k${i}`)).body, 'hello');
    const head = one(await request(s.port, 'HEAD', '/'), true);
    assert.equal(head.status, 200);
    assert.equal(head.get('content-length'), '5');
    const hints = one(await request(s.port, 'GET', '/hints'));
    assert.equal(hints.status, 200);
    assert.equal(hints.body, 'hints');
    assert.equal(hints.get('link'), undefined);
    const none = one(await request(s.port, 'GET', '/none'));
    assert.equal(none.status, 204);
    assert.equal(none.get('x-a'), '1');
    assert.equal(one(await request(s.port, 'GET', '/last')).body, 'hello');
    assert.equal(b.connections(), 1);
  } finally { await s.stop(); await b.close(); }
});

test('proxy: a kept-alive connection the server closed is retried once on a new one (not with a body)', async () => {
  // Every connection answers its first request and drops the second one unanswered.
  const b = await scriptedBackend((_n, i, head) => (i === 1 ? `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n${head.slice(0, 2)}` : null));
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${b.port}` } }] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/1')).body, 'GE');
    const again = one(await request(s.port, 'GET', '/2'));
    assert.equal(again.status, 200);
    assert.equal(again.body, 'GE');
    assert.equal(b.connections(), 2);
    // A request with a body is not sent twice: 502.
    const post = one(await request(s.port, 'POST', '/3', ['Content-Length: 3'], 'abc'));
    assert.equal(post.status, 502);
    assert.equal(b.connections(), 2);
  } finally { await s.stop(); await b.close(); }
});

test('proxy: a head sent before its body (event stream, long poll) reaches the client at once', { timeout: 10_000 }, async () => {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => { release = resolve; });
  const backend = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.flushHeaders();
    void released.then(() => res.end('data: late\n\n'));
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const port = (backend.address() as net.AddressInfo).port;
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${port}` } }] });
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: s.port, path: '/events', agent: false }, (res) => {
        // The head is here while the backend still holds the body back.
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['content-type'], 'text/event-stream');
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve(text));
        release();
      });
      req.on('error', reject);
    });
    assert.equal(body, 'data: late\n\n');
  } finally {
    await s.stop();
    backend.close();
  }
});
