/**
 * Two routers as main runs them with listen_threads > 1, here in one process:
 * router 0 owns the applications and serves the other's application requests
 * on its gateway socket; the second router reaches applications only through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { start, raw, request, one, parse, tmpdir, until, memoryLogger, TestApps, type Started } from './helpers.ts';
import { AppGateway, RemoteApps, describeTargets } from '../../src/router/app-gateway.ts';
import type { AppRequest, AppUpgrade } from '../../src/apps/types.ts';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

interface Pair { primary: Started; second: Started; gateway: AppGateway; stop(): Promise<void> }

/** Router 0 with `apps` and its gateway, and a second router forwarding to it; both with `config`. */
async function pair(config: Record<string, unknown>, apps: TestApps): Promise<Pair> {
  const dir = tmpdir();
  const sock = path.join(dir, 'apps.sock');
  const primary = await start(config, apps);
  const gateway = new AppGateway(apps, primary.host.log);
  await gateway.listen(sock);
  const remote = new RemoteApps(sock, memoryLogger());
  const applications = (config.applications ?? {}) as Record<string, unknown>;
  remote.offer(describeTargets(await apps.prepare(applications), applications));
  const second = await start(config, remote);
  return {
    primary, second, gateway,
    async stop() {
      await second.stop();
      await primary.stop();
      gateway.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

let releaseBody: () => void = () => {};
const bodyReleased = new Promise<void>((resolve) => { releaseBody = resolve; });

/** An application that shows what it was given. */
function echoApps(seen: AppRequest[]): TestApps {
  const apps = new TestApps();
  apps.targets.set('echo', {
    serve(r: AppRequest) {
      seen.push(r);
      const chunks: Buffer[] = [];
      r.req.on('data', (c: Buffer) => chunks.push(c));
      r.req.on('end', () => {
        const body = `${r.req.method} ${r.target} ${r.path} ${r.query} ${r.serverName} ${r.remoteAddr} ${r.req.httpVersion} ` +
          Buffer.concat(chunks).toString();
        r.res.writeHead(201, ['X-App', 'yes', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Type', 'text/plain']);
        r.res.end(body);
      });
    },
  });
  apps.targets.set('fail', { serve(r: AppRequest) { r.fail(503); } });
  apps.targets.set('later', {
    serve(r: AppRequest) {
      r.res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      r.res.flushHeaders();
      void bodyReleased.then(() => r.res.end('data: late\n\n'));
    },
  });
  apps.targets.set('big', {
    serve(r: AppRequest) {
      r.res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(4 * 65536) });
      for (let i = 0; i < 4; i++) r.res.write('x'.repeat(65536));
      r.res.end();
    },
  });
  apps.targets.set('ws', {
    serve(r: AppRequest) { r.res.writeHead(200, { 'Content-Length': '2' }); r.res.end('ok'); },
    upgrade(u: AppUpgrade) {
      const accept = createHash('sha1').update(KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      u.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      if (u.head.length) u.socket.write(u.head.toString().toUpperCase());
      u.socket.on('data', (d: Buffer) => {
        if (d.toString() === 'bye') u.socket.end('BYE');
        else u.socket.write(d.toString().toUpperCase());
      });
    },
  });
  return apps;
}

const CONFIG = {
  applications: { echo: {}, fail: {}, big: {}, ws: {}, later: {} },
  routes: [
    { match: { uri: '/later' }, action: { pass: 'applications/later' } },
    { match: { uri: '/fail' }, action: { pass: 'applications/fail' } },
    { match: { uri: '/big' }, action: { pass: 'applications/big' } },
    { match: { uri: '/ws' }, action: { pass: 'applications/ws' } },
    { match: { uri: '/dyn' }, action: { pass: '`applications/${args.app}`' } },
    { action: { pass: 'applications/echo', response_headers: { 'X-Route': 'second' } } },
  ],
  settings: { http: { compression: { compressors: [{ encoding: 'gzip' }] } } },
};

test('gateway: requests for applications reach router 0 with their metadata; the answer comes back whole', async () => {
  const seen: AppRequest[] = [];
  const p = await pair(CONFIG, echoApps(seen));
  try {
    const r = one(await request(p.second.port, 'POST', '/a%20b/c?x=1&y', ['Host: Example.COM:8080', 'Content-Length: 5',
      'Junction-App: ws', 'X-Client: 1'], 'hello'));
    assert.equal(r.status, 201);
    assert.equal(r.body, 'POST /a%20b/c?x=1&y /a b/c x=1&y example.com 127.0.0.1 1.1 hello');
    assert.deepEqual(r.all('set-cookie'), ['a=1', 'b=2']);
    assert.equal(r.get('x-app'), 'yes');
    assert.equal(r.get('x-route'), 'second');
    assert.equal(r.get('server'), 'Unit/1.35.0');
    // The client's fields reach the application as sent, a look-alike of the metadata included.
    const fields = seen[0].rawHeaders;
    assert.deepEqual(fields.slice(0, 6), ['Host', 'Example.COM:8080', 'Content-Length', '5', 'Junction-App', 'ws']);
    assert.equal(seen[0].localPort, String(p.second.port));
    // The client's port crosses the gateway too (apps see it as REMOTE_PORT / req.socket.remotePort).
    assert.ok(Number.isInteger(seen[0].remotePort) && seen[0].remotePort! > 0, `remote port ${seen[0].remotePort}`);

    // HTTP/1.0, HEAD, keep-alive with several requests on one connection.
    const old = one(await raw(p.second.port, 'GET /v HTTP/1.0\r\n\r\n'));
    assert.match(old.body, / 1\.0 $/);
    const both = parse(await raw(p.second.port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
    assert.deepEqual(both.map((x) => x.body.split(' ')[1]), ['/1', '/2']);
    const text = await request(p.second.port, 'HEAD', '/h');
    const head = one(text, true);
    assert.equal(head.status, 201);
    assert.ok(text.endsWith('\r\n\r\n'));
  } finally { await p.stop(); }
});

test('gateway: fail() of the application is the forwarding router\'s error page; large bodies stream; compression applies there', async () => {
  const p = await pair(CONFIG, echoApps([]));
  try {
    const f = one(await request(p.second.port, 'GET', '/fail'));
    assert.equal(f.status, 503);
    assert.equal(f.get('content-length'), '54');
    assert.match(f.body, /Error 503/);
    const big = one(await request(p.second.port, 'GET', '/big'));
    assert.equal(big.body.length, 4 * 65536);
    const gz = await new Promise<Buffer>((resolve) => {
      const s = net.connect(p.second.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.write('GET /big HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n');
    });
    const head = gz.subarray(0, gz.indexOf('\r\n\r\n')).toString('latin1');
    assert.match(head, /\r\nContent-Encoding: gzip\r\n/);
    assert.match(head, /\r\nVary: Accept-Encoding\r\n/);
    let body = gz.subarray(gz.indexOf('\r\n\r\n') + 4);
    // De-chunk.
    const out: Buffer[] = [];
    for (;;) {
      const nl = body.indexOf('\r\n');
      const n = parseInt(body.subarray(0, nl).toString(), 16);
      if (n === 0) break;
      out.push(body.subarray(nl + 2, nl + 2 + n));
      body = body.subarray(nl + 4 + n);
    }
    assert.equal(zlib.gunzipSync(Buffer.concat(out)).length, 4 * 65536);
  } finally { await p.stop(); }
});

test('gateway: a WebSocket handshake becomes a tunnel to the application through router 0', async () => {
  const p = await pair(CONFIG, echoApps([]));
  try {
    for (const target of ['/ws', '/dyn?app=ws']) {
      const sock = net.connect(p.second.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d) => { got += d.toString('latin1'); });
      sock.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\nearly`);
      await until(() => got.includes('EARLY'));
      assert.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      sock.write('hello');
      await until(() => got.includes('HELLO'));
      sock.write('bye');
      await new Promise((resolve) => sock.on('close', resolve));
      assert.ok(got.endsWith('BYE'));
    }
    await until(() => p.second.router.status().connections.active === 0);
  } finally { await p.stop(); }
});

test('gateway: router 0 gone → 503 from the forwarding router; back again → served', async () => {
  const dir = tmpdir();
  const sock = path.join(dir, 'apps.sock');
  const apps = echoApps([]);
  let gateway = new AppGateway(apps, memoryLogger());
  await gateway.listen(sock);
  const remote = new RemoteApps(sock, memoryLogger());
  const applications = CONFIG.applications as Record<string, unknown>;
  remote.offer(describeTargets(await apps.prepare(applications), applications));
  const second = await start(CONFIG, remote);
  try {
    assert.equal(one(await request(second.port, 'GET', '/x')).status, 201);
    gateway.server.closeAllConnections();
    gateway.close();
    assert.equal(one(await request(second.port, 'GET', '/x')).status, 503);
    gateway = new AppGateway(apps, memoryLogger());
    await gateway.listen(sock);
    assert.equal(one(await request(second.port, 'GET', '/x')).status, 201);
  } finally {
    await second.stop();
    gateway.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('gateway: a head the application flushed before its body reaches the client at once', { timeout: 10_000 }, async () => {
  const p = await pair(CONFIG, echoApps([]));
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: p.second.port, path: '/later', agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['content-type'], 'text/event-stream');
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve(text));
        releaseBody();
      });
      req.on('error', reject);
    });
    assert.equal(body, 'data: late\n\n');
  } finally { await p.stop(); }
});
