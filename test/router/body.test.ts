import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import { start, request, raw, one, parse, TestApps, tmpdir } from './helpers.ts';
import type { AppRequest } from '../../src/apps/types.ts';

/** An app that answers with the fields it received and echoes the body. */
function echoApp(seen: string[][]): TestApps {
  const apps = new TestApps();
  apps.targets.set('app', {
    serve(r: AppRequest) {
      seen.push(r.rawHeaders.slice());
      const chunks: Buffer[] = [];
      r.req.on('data', (c: Buffer) => chunks.push(c));
      r.req.on('end', () => {
        const body = Buffer.concat(chunks);
        r.res.writeHead(200, { 'Content-Length': String(body.length) });
        r.res.end(body);
      });
    },
  });
  return apps;
}

/** A chunked body of `data` cut into pieces of `size` bytes. */
function chunked(data: string, size: number): string {
  let out = '';
  for (let i = 0; i < data.length; i += size) {
    const piece = data.slice(i, i + size);
    out += piece.length.toString(16) + '\r\n' + piece + '\r\n';
  }
  return out + '0\r\n\r\n';
}

test('chunked request bodies are accepted by default: apps get Content-Length, no Transfer-Encoding', async () => {
  const seen: string[][] = [];
  const s = await start({ applications: { app: {} }, routes: [
    { match: { uri: '/r' }, action: { return: 204 } },
    { action: { pass: 'applications/app' } },
  ] }, echoApp(seen));
  try {
    const r = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'));
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello world');
    const f = seen[0];
    assert.equal(f.findIndex((n) => /^transfer-encoding$/i.test(n)), -1);
    assert.equal(f[f.indexOf('Content-Length') + 1], '11');
    // Other targets answer too (the body was read before routing).
    assert.equal(one(await request(s.port, 'POST', '/r', ['Transfer-Encoding: chunked'], '1\r\nx\r\n0\r\n\r\n')).status, 204);
    // Empty chunked body → Content-Length: 0.
    assert.equal(one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], '0\r\n\r\n')).body, '');
    assert.equal(seen[1][seen[1].indexOf('Content-Length') + 1], '0');
    // Keep-alive and pipelining: the bytes after the last chunk are the next request.
    const two = parse(await raw(s.port,
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nde'));
    assert.deepEqual(two.map((x) => x.body), ['abc', 'de']);
  } finally { await s.stop(); }
});

test('chunked_transform: false restores Unit\'s 411', async () => {
  const s = await start({ routes: [{ action: { return: 200 } }], settings: { http: { chunked_transform: false } } });
  try {
    const r = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], '0\r\n\r\n'));
    assert.equal(r.statusLine, 'HTTP/1.1 411 Length Required');
    assert.equal(r.get('connection'), 'close');
  } finally { await s.stop(); }
});

test('chunked bodies: strict grammar (400), TE+CL (400), HTTP/1.0 (400), max_body_size (413)', async () => {
  const seen: string[][] = [];
  const s = await start({ applications: { app: {} }, routes: [{ action: { pass: 'applications/app' } }],
    settings: { http: { max_body_size: 10 } } }, echoApp(seen));
  try {
    const post = (headers: string[], body: string) => request(s.port, 'POST', '/', headers, body);
    assert.equal(one(await post(['Transfer-Encoding: chunked', 'Content-Length: 5'], '5\r\nhello\r\n0\r\n\r\n')).status, 400);
    assert.equal(one(await raw(s.port, 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')).status, 400);
    assert.equal(one(await post(['Transfer-Encoding: chunked'], '1\r\nblah\r\n0\r\n\r\n')).status, 400);
    assert.equal(one(await post(['Transfer-Encoding: chunked'], 'zz\r\nblah\r\n0\r\n\r\n')).status, 400);
    assert.equal(one(await post(['Transfer-Encoding: chunked'], '1\nx\r\n0\r\n\r\n')).status, 400);
    // No trailer section after the last chunk.
    const trailer = one(await post(['Transfer-Encoding: chunked'], '1\r\nx\r\n0\r\nX-T: 1\r\n\r\n'));
    assert.equal(trailer.status, 400);
    assert.equal(trailer.get('connection'), 'close');
    assert.equal(one(await post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], '0\r\n\r\n')).status, 400);
    assert.equal(one(await post(['Transfer-Encoding: Chunked'], '0\r\n\r\n')).status, 501);
    const exact = one(await post(['Transfer-Encoding: chunked'], chunked('0123456789', 4)));
    assert.equal(exact.status, 200);
    assert.equal(exact.body, '0123456789');
    const big = one(await post(['Transfer-Encoding: chunked'], chunked('0123456789a', 4)));
    assert.equal(big.status, 413);
    assert.equal(big.get('connection'), 'close');
    assert.equal(seen.length, 1);
  } finally { await s.stop(); }
});

test('chunked bodies larger than body_buffer_size are spooled to body_temp_path and delivered whole', async () => {
  const dir = tmpdir();
  const seen: string[][] = [];
  const data = Array.from({ length: 200000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
  const s = await start({ applications: { app: {} }, routes: [{ action: { pass: 'applications/app' } }],
    settings: { http: { body_buffer_size: 1000, body_temp_path: dir } } }, echoApp(seen));
  try {
    const r = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], chunked(data, 7000)));
    assert.equal(r.status, 200);
    assert.equal(r.body.length, data.length);
    assert.ok(r.body === data);
    assert.equal(seen[0][seen[0].indexOf('Content-Length') + 1], String(data.length));
    // The temporary file was unlinked at once.
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('a proxied chunked request reaches the upstream with Content-Length and without Transfer-Encoding', async () => {
  const dir = tmpdir();
  const heads: string[][] = [];
  const backend = http.createServer((req, res) => {
    heads.push(req.rawHeaders);
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => res.end(Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const port = (backend.address() as { port: number }).port;
  const data = 'x'.repeat(50000);
  const s = await start({ routes: [{ action: { proxy: `http://127.0.0.1:${port}` } }],
    settings: { http: { body_buffer_size: 100, body_temp_path: dir } } });
  try {
    const small = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], '4\r\nabcd\r\n0\r\n\r\n'));
    assert.equal(small.body, 'abcd');
    const big = one(await request(s.port, 'POST', '/', ['Transfer-Encoding: chunked'], chunked(data, 3000)));
    assert.equal(big.body.length, data.length);
    for (const h of heads) {
      assert.equal(h.findIndex((n) => /^transfer-encoding$/i.test(n)), -1);
    }
    assert.equal(heads[0][heads[0].indexOf('Content-Length') + 1], '4');
    assert.equal(heads[1][heads[1].indexOf('Content-Length') + 1], String(data.length));
  } finally {
    await s.stop();
    backend.closeAllConnections();
    await new Promise((resolve) => backend.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
