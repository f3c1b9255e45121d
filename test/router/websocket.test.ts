import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { start, raw, one, tmpdir, waitLines, until, TestApps } from './helpers.ts';
import type { AppUpgrade, AppRequest } from '../../src/apps/types.ts';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const handshake = (lines: string[] = [], method = 'GET', version = '1.1', target = '/ws') =>
  [`${method} ${target} HTTP/${version}`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: websocket',
    ...lines].join('\r\n') + '\r\n\r\n';
const valid = (extra: string[] = [], target = '/ws') =>
  handshake([`Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', ...extra], 'GET', '1.1', target);

/** An application that takes upgrades: answers 101 and then echoes every byte upper-cased. */
function upgradingApp(seen: AppUpgrade[]): TestApps {
  const apps = new TestApps();
  apps.targets.set('ws', {
    serve(r: AppRequest) { r.res.writeHead(200, { 'Content-Length': '6' }); r.res.end('plain!'); },
    upgrade(u: AppUpgrade) {
      seen.push(u);
      const accept = createHash('sha1').update(KEY + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      u.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      if (u.head.length) u.socket.write(u.head.toString().toUpperCase());
      u.socket.on('data', (d: Buffer) => {
        if (d.toString() === 'bye') u.socket.end('BYE');
        else u.socket.write(d.toString().toUpperCase());
      });
    },
  });
  apps.targets.set('plain', {
    serve(r: AppRequest) { r.res.writeHead(200, { 'Content-Length': '2' }); r.res.end('ok'); },
  });
  return apps;
}

test('§14.46 handshake checks: 426 with Sec-WebSocket-Version: 13, 400 for POST, HTTP/1.0, bad key', async () => {
  const seen: AppUpgrade[] = [];
  const s = await start({ applications: { ws: {} }, routes: [{ action: { pass: 'applications/ws' } }] }, upgradingApp(seen));
  try {
    const v8 = one(await raw(s.port, handshake([`Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 8'])));
    assert.equal(v8.statusLine, 'HTTP/1.1 426 Upgrade Required');
    assert.equal(v8.get('sec-websocket-version'), '13');
    assert.equal(v8.get('connection'), 'close');
    assert.equal(v8.get('content-length'), '54');
    assert.equal(one(await raw(s.port, handshake([`Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'], 'POST'))).status, 400);
    assert.equal(one(await raw(s.port, handshake([`Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'], 'GET', '1.0'))).status, 400);
    assert.equal(one(await raw(s.port, handshake(['Sec-WebSocket-Key: short', 'Sec-WebSocket-Version: 13']))).status, 400);
    assert.equal(one(await raw(s.port, handshake(['Sec-WebSocket-Version: 13']))).status, 400);
    assert.equal(seen.length, 0);
  } finally { await s.stop(); }
});

test('an upgrade routed to an application becomes a tunnel to it; the access log has 101', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'access.log');
  const seen: AppUpgrade[] = [];
  const s = await start({ applications: { ws: {} }, routes: [
    { match: { uri: '/ws' }, action: { pass: 'applications/ws' } },
  ], access_log: { path: log, format: '$request_line $status $body_bytes_sent' } }, upgradingApp(seen));
  try {
    const sock = net.connect(s.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.write(valid([]) + 'early');
    await until(() => got.includes('EARLY'));
    assert.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    sock.write('hello');
    await until(() => got.includes('HELLO'));
    sock.write('bye');
    await new Promise((resolve) => sock.on('close', resolve));
    assert.ok(got.endsWith('BYE'));
    const u = seen[0];
    assert.equal(u.target, '/ws');
    assert.equal(u.path, '/ws');
    assert.equal(u.serverName, 'localhost');
    assert.equal(u.head.toString(), 'early');
    assert.ok(u.rawHeaders.includes('Sec-WebSocket-Key'));
    const lines = await waitLines(log, 1);
    assert.equal(lines[0], 'GET /ws HTTP/1.1 101 13');
    await until(() => s.router.status().connections.active === 0);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('upgrades to other actions, or to applications without upgrade support, are answered as normal requests', async () => {
  const seen: AppUpgrade[] = [];
  const s = await start({ applications: { ws: {}, plain: {} }, routes: [
    { match: { uri: '/plain' }, action: { pass: 'applications/plain' } },
    { match: { uri: '/return' }, action: { return: 204 } },
    { match: { uri: '/dyn' }, action: { pass: '`applications/${args.app}`' } },
  ] }, upgradingApp(seen));
  try {
    const plain = one(await raw(s.port, valid([], '/plain')));
    assert.equal(plain.status, 200);
    assert.equal(plain.body, 'ok');
    assert.equal(plain.get('connection'), 'close');
    const ret = one(await raw(s.port, valid([], '/return')));
    assert.equal(ret.status, 204);
    assert.equal(ret.get('connection'), 'close');
    assert.equal(one(await raw(s.port, valid([], '/nowhere'))).status, 404);
    // A templated pass to an application that takes upgrades.
    const dyn = await new Promise<string>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d) => { got += d.toString('latin1'); if (got.includes('\r\n\r\n') && !got.includes('BYE')) sock.write('bye'); });
      sock.on('close', () => resolve(got));
      sock.write(valid([], '/dyn?app=ws'));
    });
    assert.match(dyn, /^HTTP\/1\.1 101 /);
    assert.ok(dyn.endsWith('BYE'));
    assert.equal(seen.length, 1);
    // Other Upgrade protocols are plain requests (keep-alive as usual).
    const h2c = one(await raw(s.port, 'GET /return HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n'));
    assert.equal(h2c.status, 204);
  } finally { await s.stop(); }
});
