/**
 * The FastCGI client against a scripted FastCGI responder, for the answers
 * php-cgi does not give on demand: no output, malformed headers, protocol
 * errors, records cut into pieces with padding, a connection closed early.
 * (The real php-cgi is exercised by the other php*.test.ts files.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import {
  FastCgiConnection, ParamsEncoder, decodeNameValues, encodeNameValues, encodePairs, parseCgiHeader,
} from '../../src/apps/transport/fastcgi.ts';
import type { AppRequest } from '../../src/apps/types.ts';
import { tempDir } from './php-harness.ts';

const STDOUT = 6;
const END_REQUEST = 3;

function record(type: number, content: Buffer, padding = 0, id = 1): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 1;
  h[1] = type;
  h.writeUInt16BE(id, 2);
  h.writeUInt16BE(content.length, 4);
  h[6] = padding;
  return Buffer.concat([h, content, Buffer.alloc(padding)]);
}

const end = (protocolStatus = 0) => record(END_REQUEST, Buffer.from([0, 0, 0, 0, protocolStatus, 0, 0, 0]));
const out = (s: string | Buffer, padding = 0) => record(STDOUT, Buffer.from(s), padding);

/** What the responder sends for each REQUEST_URI; null: close the connection. */
const SCRIPTS: Record<string, () => Buffer | null> = {
  '/ok': () => Buffer.concat([out('Content-Type: text/x-ok\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello'), out(''), end()]),
  '/lf-only': () => Buffer.concat([out('Status: 201 Created\nContent-Type: text/x\n\nbody'), end()]),
  '/empty': () => end(),
  '/malformed': () => Buffer.concat([out('no colon here\r\n\r\nbody'), end()]),
  '/bad-status': () => Buffer.concat([out('Status: abc\r\n\r\nbody'), end()]),
  '/unfinished-header': () => Buffer.concat([out('Content-Type: text/plain\r\n'), end()]),
  '/protocol-error': () => end(3),
  '/close': () => null,
  '/pieces': () => {
    // The header and body one byte per record, each with padding.
    const text = 'Content-Type: text/x-pieces\r\n\r\npieces';
    return Buffer.concat([...[...text].map((c, i) => out(c, i % 8)), end()]);
  },
  '/location': () => Buffer.concat([out('Location: /there\r\n\r\n'), end()]),
  // Answered only once the next request on the connection has arrived (see respond()).
  '/wait-next': () => Buffer.concat([out('Content-Type: text/plain\r\n\r\nfirst'), end()]),
};

let tmp: string;
let socketPath: string;
let responder: net.Server;
let connections = 0;
let conn: FastCgiConnection;
let server: http.Server;
let port: number;

/** A minimal FastCGI responder: reads a request's records, answers from SCRIPTS. */
function respond(sock: net.Socket): void {
  connections++;
  let buf = Buffer.alloc(0);
  let params = Buffer.alloc(0);
  let deferred: Buffer | null = null;
  sock.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 8) {
      const len = buf.readUInt16BE(4);
      const total = 8 + len + buf[6];
      if (buf.length < total) return;
      const type = buf[1];
      const content = buf.subarray(8, 8 + len);
      buf = buf.subarray(total);
      if (type === 9) { // GET_VALUES
        sock.end(record(10, encodeNameValues(4, ['FCGI_MPXS_CONNS', '0'], false).subarray(8), 0, 0));
        return;
      }
      if (type === 4 && len > 0) params = Buffer.concat([params, content]);
      if (type === 5 && len === 0) { // end of STDIN: answer
        const uri = decodeNameValues(params).REQUEST_URI;
        params = Buffer.alloc(0);
        const reply = uri in SCRIPTS ? SCRIPTS[uri]() : Buffer.concat([out('Status: 404\r\n\r\n'), end()]);
        if (reply === null) { sock.destroy(); return; }
        if (uri === '/wait-next') { deferred = reply; continue; }
        if (deferred) { sock.write(deferred); deferred = null; }
        sock.write(reply);
      }
    }
  });
  sock.on('error', () => {});
}

before(async () => {
  tmp = tempDir();
  socketPath = path.join(tmp, 'fcgi.sock');
  responder = net.createServer(respond);
  await new Promise<void>((r) => responder.listen(socketPath, r));
  conn = await FastCgiConnection.open(socketPath, { writeLog: () => {} });
  server = http.createServer((req, res) => {
    const r: AppRequest = {
      req, res, target: req.url!, path: req.url!, query: '', remoteAddr: '', localAddr: '', localPort: '',
      serverName: 'localhost', tls: false, rawHeaders: req.rawHeaders,
      fail(status) {
        if (res.headersSent) { res.destroy(); return; }
        res.writeHead(status, { 'Content-Type': 'text/html' });
        res.end(`error ${status}`);
      },
    };
    const run = (c: FastCgiConnection) => c.request(r, ['REQUEST_URI', req.url!], { onDone() {} }, Buffer.alloc(0));
    if (conn.available) run(conn);
    else void FastCgiConnection.open(socketPath, { writeLog: () => {} }).then((c) => { conn = c; run(c); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

after(async () => {
  conn?.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => responder.close(() => r()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function get(uri: string): Promise<{ status: number; type: string | null; body: string; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${uri}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text(), headers: res.headers };
}

test('a response over the kept connection; repeated fields stay apart', async () => {
  const before = connections;
  for (let i = 0; i < 3; i++) {
    const r = await get('/ok');
    assert.equal(r.status, 200);
    assert.equal(r.type, 'text/x-ok');
    assert.equal(r.headers.get('x-a'), '1, 2');
    assert.equal(r.body, 'hello');
  }
  assert.equal(connections, before);
});

test('LF-only header lines and Status', async () => {
  const r = await get('/lf-only');
  assert.equal(r.status, 201);
  assert.equal(r.body, 'body');
});

test('no output at all: 200, text/plain, empty body', async () => {
  const r = await get('/empty');
  assert.equal(r.status, 200);
  assert.equal(r.type, 'text/plain');
  assert.equal(r.body, '');
});

test('records one byte long with padding', async () => {
  const r = await get('/pieces');
  assert.equal(r.status, 200);
  assert.equal(r.type, 'text/x-pieces');
  assert.equal(r.body, 'pieces');
});

test('Location without Status: 302', async () => {
  const res = await fetch(`http://127.0.0.1:${port}/location`, { redirect: 'manual' });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), '/there');
});

test('malformed responses: 503, the connection stays usable', async () => {
  for (const uri of ['/malformed', '/bad-status', '/unfinished-header']) {
    const r = await get(uri);
    assert.equal(r.status, 503, uri);
    assert.equal(r.body, 'error 503');
  }
  assert.equal(conn.available, true);
  assert.equal((await get('/ok')).status, 200);
});

test('END_REQUEST with a protocol error, or the connection closed: 503', async () => {
  for (const uri of ['/protocol-error', '/close']) {
    const r = await get(uri);
    assert.equal(r.status, 503, uri);
    // The connection is given up (the harness opens a new one for the next request).
    assert.equal(conn.closed, true, uri);
    assert.equal((await get('/ok')).status, 200);
  }
});

test('parseCgiHeader', () => {
  assert.deepEqual(parseCgiHeader('Status: 404 Not Found\r\nX: y'), { status: 404, fields: ['X', 'y'] });
  assert.deepEqual(parseCgiHeader('Location: /a'), { status: 302, fields: ['Location', '/a'] });
  assert.deepEqual(parseCgiHeader('Status: 301\r\nLocation: /a'), { status: 301, fields: ['Location', '/a'] });
  assert.deepEqual(parseCgiHeader('Set-Cookie: a=1\nSet-Cookie: b=2'), { status: 200, fields: ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'] });
  assert.equal(parseCgiHeader('nocolon'), null);
  assert.equal(parseCgiHeader('Status: 2000'), null);
  assert.deepEqual(parseCgiHeader('X-A:  spaced value \t\r\n\r\n'), { status: 200, fields: ['X-A', 'spaced value'] });
  // What Node would refuse to send is a malformed response.
  assert.equal(parseCgiHeader('X-A: bell\x07'), null);
  assert.equal(parseCgiHeader('Bad Name: v'), null);
  assert.equal(parseCgiHeader(': v'), null);
});

/** The records of `buf` as [type, content] pairs. */
function records(buf: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  for (let o = 0; o < buf.length;) {
    const len = buf.readUInt16BE(o + 4);
    out.push([buf[o + 1], buf.subarray(o + 8, o + 8 + len)]);
    o += 8 + len + buf[o + 6];
  }
  return out;
}

test('ParamsEncoder: BEGIN_REQUEST, parameters in records of at most 64 KiB, the stream ends', () => {
  const enc = new ParamsEncoder();
  const constant = encodePairs(['SERVER_SOFTWARE', 'Unit/1.35.0']);
  enc.start().block(constant);
  for (let i = 0; i < 30; i++) enc.pair(`N${i}`, 'v'.repeat(5000));
  enc.pair('EMPTY', '');
  const head = enc.finish(true);
  assert.equal(head.complete, true);
  const recs = records(head.bytes);
  assert.deepEqual(recs[0], [1, Buffer.from([0, 1, 1, 0, 0, 0, 0, 0])]);
  const params = recs.filter(([t]) => t === 4);
  assert.ok(params.length >= 4);
  for (const [, c] of params) assert.ok(c.length <= 0xffff);
  assert.equal(params[params.length - 1][1].length, 0);
  assert.deepEqual(recs[recs.length - 1], [5, Buffer.alloc(0)]);
  const seen: Record<string, string> = {};
  for (const [, c] of params) Object.assign(seen, decodeNameValues(c));
  assert.equal(seen.SERVER_SOFTWARE, 'Unit/1.35.0');
  assert.equal(seen.N29, 'v'.repeat(5000));
  assert.equal(seen.EMPTY, '');
  // The scratch buffer is reused: a second request does not carry the first one's bytes.
  const again = enc.start().pair('A', 'b').finish(false);
  assert.equal(again.complete, false);
  assert.deepEqual(records(again.bytes).map(([t, c]) => [t, c.length]), [[1, 8], [4, 4], [4, 0]]);
  assert.throws(() => enc.start().pair('BIG', 'x'.repeat(70_000)), RangeError);
});

test('pipeline: a second request is sent while the first runs; both are answered in turn', async () => {
  const pconn = await FastCgiConnection.open(socketPath, { writeLog: () => {}, pipeline: 1 });
  const srv = http.createServer((req, res) => {
    const r: AppRequest = {
      req, res, target: req.url!, path: req.url!, query: '', remoteAddr: '', localAddr: '', localPort: '',
      serverName: 'localhost', tls: false, rawHeaders: req.rawHeaders,
      fail(status) { res.writeHead(status).end(); },
    };
    if (!pconn.accepting) { res.writeHead(500).end('not accepting'); return; }
    pconn.request(r, ['REQUEST_URI', req.url!], { onDone() {} }, Buffer.alloc(0));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const p = (srv.address() as net.AddressInfo).port;
  try {
    // The responder holds /wait-next until the next request arrives on the same connection.
    const first = fetch(`http://127.0.0.1:${p}/wait-next`).then(async (res) => [res.status, await res.text()]);
    await waitUntil(() => pconn.busy);
    assert.equal(pconn.accepting, true);
    const second = await fetch(`http://127.0.0.1:${p}/ok`);
    assert.equal(second.status, 200);
    assert.equal(await second.text(), 'hello');
    assert.deepEqual(await first, [200, 'first']);
    assert.equal(pconn.busy, false);
    assert.equal(pconn.requests, 2);
  } finally {
    pconn.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

async function waitUntil(fn: () => boolean): Promise<void> {
  while (!fn()) await new Promise((r) => setTimeout(r, 5));
}

test('encodeNameValues keeps each pair inside one record', () => {
  const pairs: string[] = [];
  for (let i = 0; i < 30; i++) pairs.push(`N${i}`, 'v'.repeat(5000));
  const buf = encodeNameValues(4, pairs, true);
  const seen: Record<string, string> = {};
  let o = 0;
  let records = 0;
  while (o < buf.length) {
    const len = buf.readUInt16BE(o + 4);
    if (len > 0) Object.assign(seen, decodeNameValues(buf.subarray(o + 8, o + 8 + len)));
    o += 8 + len + buf[o + 6];
    records++;
  }
  assert.equal(Object.keys(seen).length, 30);
  assert.equal(seen.N29, 'v'.repeat(5000));
  assert.ok(records >= 4);
  assert.throws(() => encodeNameValues(4, ['BIG', 'x'.repeat(70_000)], true), RangeError);
});
