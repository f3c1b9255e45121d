import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import zlib from 'node:zlib';
import { start, request, raw, one, tmpdir, TestApps } from './helpers.ts';
import type { AppRequest } from '../../src/apps/types.ts';

const text = (n: number): string => Array.from({ length: n }, (_, i) => `line ${i} of some compressible text\n`).join('').slice(0, n);

/** Decode a body (a latin1 string as the helpers return it) per Content-Encoding. */
function decode(body: string, encoding: string | undefined): string {
  const b = Buffer.from(body, 'latin1');
  switch (encoding) {
    case 'gzip': return zlib.gunzipSync(b).toString();
    case 'deflate': return zlib.inflateSync(b).toString();
    case 'br': return zlib.brotliDecompressSync(b).toString();
    case 'zstd': return (zlib as unknown as { zstdDecompressSync(b: Buffer): Buffer }).zstdDecompressSync(b).toString();
    default: return b.toString();
  }
}

test('§14.47 static files: compressed with the compressed Content-Length, 406 when identity is refused', async () => {
  const dir = tmpdir();
  const content = text(4096);
  fs.writeFileSync(path.join(dir, 'a.txt'), content);
  const s = await start({ routes: [{ action: { share: `${dir}$uri` } }],
    settings: { http: { compression: { compressors: { encoding: 'gzip' } } } } });
  try {
    const gz = one(await request(s.port, 'GET', '/a.txt', ['Accept-Encoding: gzip']));
    assert.equal(gz.status, 200);
    assert.equal(gz.get('content-encoding'), 'gzip');
    assert.equal(gz.get('vary'), 'Accept-Encoding');
    assert.equal(Number(gz.get('content-length')), gz.body.length);
    assert.ok(gz.body.length < content.length);
    assert.equal(decode(gz.body, 'gzip'), content);
    assert.equal(gz.get('etag'), one(await request(s.port, 'GET', '/a.txt')).get('etag'));
    // HEAD: same header, no body.
    const head = one(await request(s.port, 'HEAD', '/a.txt', ['Accept-Encoding: gzip']), true);
    assert.equal(head.get('content-length'), gz.get('content-length'));
    assert.equal(head.get('content-encoding'), 'gzip');
    const refused = one(await request(s.port, 'GET', '/a.txt', ['Accept-Encoding: identity;q=0']));
    assert.equal(refused.statusLine, 'HTTP/1.1 406 Not Acceptable');
    const plain = one(await request(s.port, 'GET', '/a.txt'));
    assert.equal(plain.get('content-encoding'), undefined);
    assert.equal(plain.get('content-length'), '4096');
    assert.equal(plain.body, content);
    assert.equal(plain.get('vary'), 'Accept-Encoding');
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('Accept-Encoding is parsed as Unit does', async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'a.txt'), text(3000));
  const s = await start({ routes: [{ action: { share: `${dir}$uri` } }],
    settings: { http: { compression: { compressors: [{ encoding: 'gzip' }, { encoding: 'br', level: 99 }, { encoding: 'deflate', level: 1 }] } } } });
  const coding = async (ae: string): Promise<string | number | undefined> => {
    const r = one(await request(s.port, 'GET', '/a.txt', [`Accept-Encoding: ${ae}`]));
    if (r.status !== 200) return r.status;
    assert.equal(decode(r.body, r.get('content-encoding')), text(3000));
    return r.get('content-encoding');
  };
  try {
    assert.equal(await coding('gzip, br'), 'br');           // equal q: the later one
    assert.equal(await coding('br, gzip'), 'gzip');
    assert.equal(await coding('br;q=0.5, gzip;q=0.4'), 'br');
    assert.equal(await coding('gzip;q=0.5, deflate'), 'deflate');
    assert.equal(await coding('GZIP'), undefined);          // case-sensitive
    assert.equal(await coding('gzip;q=0'), undefined);
    assert.equal(await coding('gzip;q=2'), undefined);      // invalid q: element ignored
    assert.equal(await coding('g zip ; q = 1'), 'gzip');    // spaces are removed first
    assert.equal(await coding('compress'), undefined);
    assert.equal(await coding('*;q=0, gzip'), 'gzip');
    assert.equal(await coding('*;q=0, compress'), 406);
    assert.equal(await coding('*'), undefined);             // `*` stands for identity
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('types, min_length, zero-length files and ranges', async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'a.txt'), text(3000));
  fs.writeFileSync(path.join(dir, 'small.txt'), 'tiny');
  fs.writeFileSync(path.join(dir, 'empty.txt'), '');
  fs.writeFileSync(path.join(dir, 'b.png'), text(3000));
  const s = await start({ routes: [{ action: { share: `${dir}$uri` } }],
    settings: { http: { compression: { types: ['text/*'], compressors: [{ encoding: 'gzip', min_length: 100 }] } } } });
  const get = async (p: string, h: string[] = []) => one(await request(s.port, 'GET', p, ['Accept-Encoding: gzip', ...h]));
  try {
    assert.equal((await get('/a.txt')).get('content-encoding'), 'gzip');
    const png = await get('/b.png');
    assert.equal(png.get('content-encoding'), undefined);
    assert.equal(png.get('vary'), undefined);
    const small = await get('/small.txt');
    assert.equal(small.get('content-encoding'), undefined);
    assert.equal(small.body, 'tiny');
    assert.equal((await get('/empty.txt')).get('content-encoding'), undefined);
    // A range is served from the identity file.
    const part = await get('/a.txt', ['Range: bytes=0-9']);
    assert.equal(part.status, 206);
    assert.equal(part.get('content-encoding'), undefined);
    assert.equal(part.body, text(10));
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('large static files are compressed while streaming; a changed file is not served from the cache', async () => {
  const dir = tmpdir();
  const big = text(3 * 1024 * 1024);
  fs.writeFileSync(path.join(dir, 'big.txt'), big);
  fs.writeFileSync(path.join(dir, 'c.txt'), 'first version of the file '.repeat(20));
  const codings = ['gzip', 'deflate', 'br', ...('createZstdCompress' in zlib ? ['zstd'] : [])];
  const s = await start({ routes: [{ action: { share: `${dir}$uri` } }],
    settings: { http: { compression: { compressors: codings.map((encoding) => ({ encoding, level: 1 })) } } } });
  try {
    for (const enc of codings) {
      const r = one(await request(s.port, 'GET', '/big.txt', [`Accept-Encoding: ${enc}`]));
      assert.equal(r.get('content-encoding'), enc);
      assert.equal(r.get('transfer-encoding'), 'chunked');
      assert.equal(r.get('content-length'), undefined);
      assert.ok(decode(r.body, enc) === big, enc);
    }
    // HTTP/1.0: the body ends with the connection.
    const old = one(await raw(s.port, 'GET /big.txt HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n'));
    assert.equal(old.get('transfer-encoding'), undefined);
    assert.ok(decode(old.body, 'gzip') === big);
    const c1 = one(await request(s.port, 'GET', '/c.txt', ['Accept-Encoding: gzip']));
    assert.equal(decode(c1.body, 'gzip'), 'first version of the file '.repeat(20));
    fs.writeFileSync(path.join(dir, 'c.txt'), 'second version, longer '.repeat(30));
    const c2 = one(await request(s.port, 'GET', '/c.txt', ['Accept-Encoding: gzip']));
    assert.equal(decode(c2.body, 'gzip'), 'second version, longer '.repeat(30));
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('application responses of known length are compressed and streamed; others are not', async () => {
  const apps = new TestApps();
  const body = text(5000);
  apps.targets.set('app', {
    serve(r: AppRequest) {
      const u = r.target;
      if (u === '/sized') { r.res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(body.length) }); r.res.end(body); }
      else if (u === '/implicit') { r.res.setHeader('Content-Type', 'text/plain'); r.res.end(body); }
      else if (u === '/pieces') {
        r.res.writeHead(201, { 'Content-Type': 'text/html', 'Content-Length': String(body.length) });
        r.res.write(body.slice(0, 1000));
        setImmediate(() => { r.res.write(body.slice(1000, 3000)); r.res.end(body.slice(3000)); });
      }
      else if (u === '/unsized') { r.res.writeHead(200, { 'Content-Type': 'text/plain' }); r.res.write(body); r.res.end(); }
      else if (u === '/encoded') { r.res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'x-mine', 'Content-Length': '3' }); r.res.end('abc'); }
      else if (u === '/untyped') { r.res.writeHead(200, { 'Content-Length': String(body.length) }); r.res.end(body); }
      else if (u === '/vary') { r.res.writeHead(200, { 'Content-Type': 'text/plain', Vary: 'Cookie', 'Content-Length': String(body.length) }); r.res.end(body); }
      else if (u === '/partial') { r.res.writeHead(206, { 'Content-Type': 'text/plain', 'Content-Range': `bytes 0-9/${body.length}`, 'Content-Length': '10' }); r.res.end(body.slice(0, 10)); }
      else { r.res.writeHead(204); r.res.end(); }
    },
  });
  const backend = http.createServer((_q, res) => { res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(body.length) }); res.end(body); });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const s = await start({ applications: { app: {} }, routes: [
    { match: { uri: '/proxy' }, action: { proxy: `http://127.0.0.1:${(backend.address() as { port: number }).port}` } },
    { match: { uri: '/return' }, action: { return: 200 } },
    { action: { pass: 'applications/app' } },
  ], settings: { http: { compression: { types: ['text/*'], compressors: [{ encoding: 'gzip' }] } } } }, apps);
  const get = async (p: string) => one(await request(s.port, 'GET', p, ['Accept-Encoding: gzip']));
  try {
    for (const p of ['/sized', '/implicit', '/pieces']) {
      const r = await get(p);
      assert.equal(r.get('content-encoding'), 'gzip', p);
      assert.equal(r.get('content-length'), undefined, p);
      assert.equal(r.get('transfer-encoding'), 'chunked', p);
      assert.equal(r.get('vary'), 'Accept-Encoding', p);
      assert.equal(decode(r.body, 'gzip'), body, p);
    }
    assert.equal((await get('/pieces')).status, 201);
    // HEAD: the same header change, no body.
    const head = one(await request(s.port, 'HEAD', '/sized', ['Accept-Encoding: gzip']), true);
    assert.equal(head.get('content-encoding'), 'gzip');
    assert.equal(head.get('content-length'), undefined);
    // Keep-alive goes on after a compressed response.
    const text2 = await raw(s.port, 'GET /sized HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\nGET /encoded HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.match(text2, /Content-Encoding: x-mine\r\n/);
    const vary = await get('/vary');
    assert.equal(vary.get('vary'), 'Cookie, Accept-Encoding');
    assert.equal(decode(vary.body, vary.get('content-encoding')), body);
    for (const p of ['/unsized', '/untyped', '/proxy', '/return', '/partial']) {
      const r = await get(p);
      assert.equal(r.get('content-encoding'), undefined, p);
    }
    assert.equal((await get('/unsized')).body, body);
    assert.equal((await get('/encoded')).body, 'abc');
    // Without Accept-Encoding the app's response is untouched.
    const plain = one(await request(s.port, 'GET', '/sized'));
    assert.equal(plain.get('content-length'), String(body.length));
    assert.equal(plain.body, body);
  } finally {
    await s.stop();
    backend.closeAllConnections();
    await new Promise((resolve) => backend.close(resolve));
  }
});
