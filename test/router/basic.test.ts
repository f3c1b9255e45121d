import { test } from 'node:test';
import assert from 'node:assert/strict';
import { start, request, raw, one, parse } from './helpers.ts';

const ERROR_404 = '<!DOCTYPE html><title>Error 404</title><p>Error 404.\r\n';

test('§14.1 return 200: Server, Date, Content-Length 0, Connection close', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    const r = one(await request(s.port, 'GET', '/'));
    assert.equal(r.statusLine, 'HTTP/1.1 200 OK');
    assert.deepEqual(r.headers.map((h) => h[0]), ['Server', 'Date', 'Content-Length', 'Connection']);
    assert.equal(r.get('server'), 'Unit/1.35.0');
    assert.match(r.get('date')!, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    assert.equal(r.get('content-length'), '0');
    assert.equal(r.get('connection'), 'close');
    assert.equal(r.body, '');
  } finally { await s.stop(); }
  const s2 = await start({ routes: [{ action: { return: 200 } }], settings: { http: { server_version: false } } });
  try {
    assert.equal(one(await request(s2.port, 'GET', '/')).get('server'), 'Unit');
  } finally { await s2.stop(); }
});

test('§14.2 HTTP/1.0 without Connection: no Connection field, closed', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    const r = one(await raw(s.port, 'GET / HTTP/1.0\r\n\r\n'));
    assert.equal(r.status, 200);
    assert.equal(r.get('content-length'), '0');
    assert.equal(r.get('connection'), undefined);
  } finally { await s.stop(); }
});

test('§14.3 pipelined requests answered in order', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    const rs = parse(await raw(s.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
    assert.equal(rs.length, 2);
    assert.equal(rs[0].status, 200);
    assert.equal(rs[0].get('connection'), undefined);
    assert.equal(rs[1].get('connection'), 'close');
  } finally { await s.stop(); }
});

test('§14.4 error page for return 404', async () => {
  const s = await start({ routes: [{ action: { return: 404 } }] });
  try {
    const r = one(await request(s.port, 'GET', '/'));
    assert.equal(r.statusLine, 'HTTP/1.1 404 Not Found');
    assert.equal(r.get('content-type'), 'text/html');
    assert.equal(r.get('content-length'), '54');
    assert.equal(r.body, ERROR_404);
    assert.deepEqual(r.headers.map((h) => h[0]), ['Content-Type', 'Server', 'Date', 'Content-Length', 'Connection']);
  } finally { await s.stop(); }
});

test('§14.5 return 999 and codes below 100', async () => {
  const s = await start({ routes: { a: [{ match: { uri: '/a' }, action: { return: 999 } }, { action: { return: 7 } }] },
    listeners: { '*:8080': { pass: 'routes/a' } } });
  try {
    const r = one(await request(s.port, 'GET', '/a'));
    assert.equal(r.statusLine, 'HTTP/1.1 999 ');
    assert.equal(r.get('content-length'), '0');
    assert.equal(r.body, '');
    const r2 = one(await request(s.port, 'GET', '/b'));
    assert.equal(r2.statusLine, 'HTTP/1.1 007 ');
  } finally { await s.stop(); }
});

test('§14.6/7/35 return location with variables and encoding', async () => {
  const s = await start({ routes: [
    { match: { uri: '/6/*' }, action: { return: 301, location: 'https://${host}${uri}' } },
    { match: { uri: '/7a' }, action: { return: 302, location: ' %20' } },
    { match: { uri: '/7b' }, action: { return: 302, location: '/?a?b' } },
    { match: { uri: '/35' }, action: { return: 301, location: 'a${dollar}b' } },
    { match: { uri: '/empty' }, action: { return: 302, location: '$arg_x' } },
  ] });
  try {
    const r = one(await request(s.port, 'GET', '/6/a%20b', ['Host: EXAMPLE.com.:8080']));
    assert.equal(r.status, 301);
    assert.equal(r.get('location'), 'https://example.com/6/a%20b');
    assert.equal(one(await request(s.port, 'GET', '/7a')).get('location'), '%20%2520');
    assert.equal(one(await request(s.port, 'GET', '/7b')).get('location'), '/?a%3Fb');
    assert.equal(one(await request(s.port, 'GET', '/35')).get('location'), 'a$b');
    const e = one(await request(s.port, 'GET', '/empty'));
    assert.deepEqual(e.headers[0], ['Location', '']);
  } finally { await s.stop(); }
});

test('§14.8/9 no step matches → 404; pass loop → 500', async () => {
  const s = await start({ routes: [{ match: { uri: '/x' }, action: { return: 200 } }] });
  try {
    const r = one(await request(s.port, 'GET', '/y'));
    assert.equal(r.status, 404);
    assert.equal(r.body, ERROR_404);
  } finally { await s.stop(); }
  const s2 = await start({ routes: [{ action: { pass: 'routes' } }] });
  try {
    assert.equal(one(await request(s2.port, 'GET', '/')).status, 500);
  } finally { await s2.stop(); }
});

test('§14.10/11 method and host', async () => {
  const s = await start({ routes: [
    { match: { method: 'get', host: 'example.com' }, action: { return: 200 } },
  ] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/', ['Host: EXAMPLE.COM.:8080'])).status, 200);
    assert.equal(one(await request(s.port, 'POST', '/', ['Host: example.com'])).status, 404);
    assert.equal(one(await request(s.port, 'GET', '/', ['Host: www.example.com'])).status, 404);
  } finally { await s.stop(); }
});

test('§14.12 bad Host → 400; missing Host accepted', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/', ['Host: a..b'])).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/', ['Host: a', 'Host: b'])).status, 400);
    const r = one(await request(s.port, 'GET', '/', ['Host: /x']));
    assert.equal(r.status, 400);
    assert.equal(r.get('connection'), 'close');
    assert.equal(one(await raw(s.port, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')).status, 200);
  } finally { await s.stop(); }
});

test('§14.13 uri normalisation', async () => {
  const s = await start({ routes: [{ match: { uri: '/blah' }, action: { return: 200 } }] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/foo/../%62lah')).status, 200);
    assert.equal(one(await request(s.port, 'GET', '//blah?x#f')).status, 200);
  } finally { await s.stop(); }
});

test('§14.14 malformed request lines', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    for (const t of ['/../x', '/%zz', '/%00', 'http://h/']) {
      const r = one(await request(s.port, 'GET', t));
      assert.equal(r.status, 400, t);
      assert.equal(r.get('connection'), 'close');
      assert.equal(r.get('content-length'), '54');
    }
    assert.equal(one(await raw(s.port, 'get / HTTP/1.1\r\nHost: a\r\n\r\n')).status, 400);
    const v = one(await raw(s.port, 'GET / HTTP/2.0\r\nHost: a\r\n\r\n'));
    assert.equal(v.statusLine, 'HTTP/1.1 505 HTTP Version Not Supported');
  } finally { await s.stop(); }
});

test('§14.15 bad fields → 400, oversized → 431', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/', ['Foo : bar'])).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/', ['Foo: b\x01r'])).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/', ['Foo: bar', ' folded'])).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/', [`${'X'.repeat(256)}: 1`])).status, 431);
    assert.equal(one(await request(s.port, 'GET', '/', [`Host: ${'a'.repeat(10000)}`])).status, 431);
    assert.equal(one(await request(s.port, 'GET', '/', [`Host: ${'a'.repeat(8191)}`])).status, 200);
  } finally { await s.stop(); }
});

test('§14.16/17 body limits and transfer codings (chunked_transform: false as in Unit)', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }], settings: { http: { max_body_size: 5, chunked_transform: false } } });
  try {
    const big = one(await request(s.port, 'POST', '/', ['Content-Length: 6'], '123456'));
    assert.equal(big.status, 413);
    assert.equal(big.get('connection'), 'close');
    assert.equal(one(await request(s.port, 'POST', '/', ['Content-Length: 5'], '12345')).status, 200);
    assert.equal(one(await request(s.port, 'POST', '/', ['Content-Length: abc'])).status, 400);
    assert.equal(one(await request(s.port, 'POST', '/', ['Content-Length: 1', 'Content-Length: 1'], 'x')).status, 400);
    const ch = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], '0\r\n\r\n'));
    assert.equal(ch.statusLine, 'HTTP/1.1 411 Length Required');
    const gz = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: gzip']));
    assert.equal(gz.statusLine, 'HTTP/1.1 501 Not Implemented');
  } finally { await s.stop(); }
});
