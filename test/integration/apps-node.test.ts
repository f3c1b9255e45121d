/**
 * Node.js applications, unmodified, through the real daemon — each check on
 * two listeners: one passing straight to the application (its connections are
 * handed to the application's processes) and one through routes (the router
 * proxies each request). node:http, https and net servers; Express, Fastify,
 * Koa; WebSocket upgrades taken by the application with `ws`; Unit-style
 * configurations naming unit-http; what broke under Unit's Node module; and
 * the client's real address in `req.socket`, which no client can forge.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { Junction, freePort, request, waitFor } from './harness.ts';
import { ONE_ROUTER, getWith, nodeApp } from './apps-helpers.ts';

/** The whole response to one request on a fresh connection (`Connection: close`), as bytes on the wire. */
function raw(port: number, p: string, headers: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
    s.on('error', reject);
    s.write(`GET ${p} HTTP/1.1\r\nHost: localhost\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`);
  });
}

/** Field lines of a raw response head, lower-case names. */
function fieldLines(response: string, name: string): string[] {
  const head = response.slice(0, response.indexOf('\r\n\r\n'));
  return head.split('\r\n').slice(1).filter((l) => l.toLowerCase().startsWith(`${name}:`));
}

const APPS = {
  compat: nodeApp('compat_app.cjs', { processes: 2 }),
  express: nodeApp('express_app.cjs'),
  fastify: nodeApp('fastify_app.cjs'),
  fastifyLocalhost: nodeApp('fastify_localhost.cjs'),
  koa: nodeApp('koa_app.cjs'),
  ws: nodeApp('ws_app.cjs'),
  esm: nodeApp('esm_app.mjs'),
  https: nodeApp('https_app.cjs'),
  net: nodeApp('net_app.cjs'),
  unitCjs: nodeApp('unit_http_app.cjs', { arguments: ['--require', 'unit-http/loader', '--loader', 'unit-http/loader.mjs', 'unit_http_app.cjs'] }),
  unitEsm: { ...nodeApp('unit_http_esm.mjs'), executable: '/usr/bin/env', arguments: ['node', '--loader', 'unit-http/loader.mjs', '--require', 'unit-http/loader', 'unit_http_esm.mjs'] },
};
type AppName = keyof typeof APPS;

describe('Node.js applications, unmodified', () => {
  let j: Junction;
  let scratch: string;
  /** Per application: [direct listener port, routed listener port]. */
  const ports = new Map<AppName, [number, number]>();

  before(async () => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-node-'));
    fs.chmodSync(scratch, 0o777);
    j = await Junction.start({ env: { PATH: `${process.execPath.replace(/\/[^/]+$/, '')}:${process.env.PATH}` } });
    const listeners: Record<string, unknown> = {};
    const routes: Record<string, unknown> = {};
    for (const name of Object.keys(APPS) as AppName[]) {
      const direct = await freePort();
      const routed = await freePort();
      ports.set(name, [direct, routed]);
      listeners[`127.0.0.1:${direct}`] = { pass: `applications/${name}` };
      listeners[`127.0.0.1:${routed}`] = { pass: `routes/${name}` };
      routes[name] = [{ action: { pass: `applications/${name}` } }];
    }
    await j.configure({ listeners, routes, applications: APPS, settings: ONE_ROUTER });
  });

  after(async () => {
    await j.cleanup();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  /** Run `check` on the direct and on the routed listener of `app`. */
  async function both(app: AppName, check: (port: number, path: 'direct' | 'routed') => Promise<void>): Promise<void> {
    const [direct, routed] = ports.get(app)!;
    await check(direct, 'direct');
    await check(routed, 'routed');
  }

  test('Express, Fastify (also on its default "localhost") and Koa', async () => {
    await both('express', async (port, how) => {
      const r = await getWith(port, '/');
      assert.equal(r.status, 200, how);
      assert.equal(r.body, 'Hello from Express\n');
      assert.equal(r.headers.server, 'Unit/1.35.0');
    });
    await both('fastify', async (port, how) => {
      const r = await getWith(port, '/');
      assert.equal(r.status, 200, how);
      assert.deepEqual(JSON.parse(r.body), { hello: 'fastify', ip: '127.0.0.1' }, how);
      const post = await request({ host: '127.0.0.1', port, method: 'POST', path: '/echo', headers: { 'Content-Type': 'application/json' }, body: '{"a":[1,2]}' });
      assert.deepEqual(JSON.parse(post.body), { body: { a: [1, 2] } }, how);
    });
    await both('fastifyLocalhost', async (port, how) => {
      const r = await getWith(port, '/');
      assert.equal(r.status, 200, how);
      assert.deepEqual(JSON.parse(r.body), { hello: 'fastify on localhost' });
    });
    await both('koa', async (port, how) => {
      const r = await getWith(port, '/some/path');
      assert.equal(r.status, 200, how);
      assert.equal(r.headers['x-framework'], 'koa');
      assert.deepEqual(JSON.parse(r.body), { hello: 'koa', path: '/some/path', ip: '127.0.0.1' }, how);
    });
  });

  test('WebSocket: the upgrade reaches the application\'s own server.on("upgrade") (ws)', async () => {
    await both('ws', async (port, how) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      const messages: string[] = [];
      const next = () => new Promise<string>((resolve, reject) => {
        if (messages.length) { resolve(messages.shift()!); return; }
        ws.once('message', () => resolve(messages.shift()!));
        ws.once('error', reject);
      });
      ws.on('message', (d) => messages.push(String(d)));
      const opened = new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
      await opened;
      assert.equal(await next(), 'welcome /ws from 127.0.0.1', how);
      ws.send('ping');
      assert.equal(await next(), 'echo: ping');
      ws.send(Buffer.from([1, 2, 3]), { binary: true });
      await waitFor(() => messages.length > 0, 'the binary echo');
      ws.close();
      await new Promise((resolve) => ws.once('close', resolve));
      // Plain requests still work on the same server; other upgrades get the app's own 404.
      assert.equal((await getWith(port, '/')).body, 'plain http\n');
      const other = new WebSocket(`ws://127.0.0.1:${port}/nope`);
      const err = await new Promise<Error>((resolve) => other.once('error', resolve));
      assert.match(err.message, /404/, how);
    });
  });

  test('Unit-style configurations naming unit-http (CommonJS and ES modules) run as they are', async () => {
    await both('unitCjs', async (port, how) => {
      assert.equal((await getWith(port, '/')).body, 'written for Unit\n', how);
    });
    await both('unitEsm', async (port, how) => {
      assert.equal((await getWith(port, '/')).body, 'ESM written for Unit\n', how);
    });
  });

  test('ES modules, https and net servers', async () => {
    await both('esm', async (port, how) => {
      assert.equal((await getWith(port, '/')).body, 'esm OK 127.0.0.1', how);
    });
    await both('https', async (port, how) => {
      const r = await getWith(port, '/x?y');
      assert.equal(r.status, 200, how);
      assert.equal(r.body, 'https app GET /x?y');
    });
    await both('net', async (port, how) => {
      const r = await getWith(port, '/raw');
      assert.equal(r.status, 200, how);
      assert.equal(r.body, 'net app saw GET /raw HTTP/1.1');
    });
  });

  test('three Set-Cookie fields arrive as three', async () => {
    await both('compat', async (port, how) => {
      const r = await getWith(port, '/cookies');
      assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly', 'c=3'], how);
      const wire = await raw(port, '/cookies');
      assert.equal(fieldLines(wire, 'set-cookie').length, 3, how);
    });
  });

  test('an application that sets Transfer-Encoding itself: exactly one such field on the wire', async () => {
    await both('compat', async (port, how) => {
      const wire = await raw(port, '/te');
      assert.deepEqual(fieldLines(wire, 'transfer-encoding').map((l) => l.toLowerCase()), ['transfer-encoding: chunked'], how);
      const r = await getWith(port, '/te');
      assert.equal(r.body, 'chunk one, chunk two', how);
    });
  });

  test('res.flushHeaders() sends the head before the body exists', async () => {
    await both('compat', async (port, how) => {
      const file = path.join(scratch, `flush-${how}`);
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: `/flush?file=${encodeURIComponent(file)}`, agent: false }, (res) => {
          // The head is here while the application still holds the body back: let it go now.
          assert.equal(res.statusCode, 200);
          assert.equal(res.headers['content-type'], 'text/plain');
          let text = '';
          res.on('data', (d) => { text += d; });
          res.on('end', () => resolve(text));
          fs.writeFileSync(file, '');
        });
        req.on('error', reject);
      });
      assert.equal(body, 'flushed body', how);
    });
  });

  test('res.write(Uint8Array) and end(Uint8Array)', async () => {
    await both('compat', async (port, how) => {
      const r = await getWith(port, '/uint8');
      assert.equal(r.body, 'hi!', how);
    });
  });

  test('req.destroy(): the client connection ends without an answer (or 503 through routes); the app goes on', async () => {
    const [direct, routed] = ports.get('compat')!;
    await assert.rejects(getWith(direct, '/destroy'), /socket hang up|ECONNRESET/);
    const r = await getWith(routed, '/destroy');
    assert.equal(r.status, 503);
    for (const port of [direct, routed]) assert.equal((await getWith(port, '/uint8')).body, 'hi!');
  });

  test('bodies: large uploads stream through; over max_body_size → 413 on both paths', async () => {
    await both('compat', async (port, how) => {
      const body = Buffer.alloc(3 * 1024 * 1024 + 7, 0x61);
      const r = await request({ host: '127.0.0.1', port, method: 'POST', path: '/echo', body });
      assert.equal(r.headers['x-length'], String(body.length), how);
      assert.equal(r.raw.length, body.length);
      const big = await request({ host: '127.0.0.1', port, method: 'POST', path: '/echo', headers: { 'Content-Length': String(9 * 1024 * 1024) }, body: Buffer.alloc(1024) })
        .catch((e: Error) => ({ status: 0, body: e.message }));
      assert.equal(big.status, 413, `${how}: ${big.body}`);
    });
  });

  test('req.socket tells the real client (address, port, family); clients cannot forge it', async () => {
    await both('compat', async (port, how) => {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      const clientPort = s.localPort;
      const forged = 'Junction-Client: 203.0.113.9 4242 10.0.0.1 80 https';
      s.write(`GET /client HTTP/1.1\r\nHost: x\r\n${forged}\r\nX-Other: 1\r\nConnection: close\r\n\r\n`);
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      await new Promise((r) => s.once('end', r));
      const text = Buffer.concat(chunks).toString();
      const info = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4).replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, ''));
      assert.equal(info.remoteAddress, '127.0.0.1', how);
      assert.equal(info.remotePort, clientPort, how);
      assert.equal(info.remoteFamily, 'IPv4', how);
      assert.equal(info.localPort, port, how);
      assert.equal(info.encrypted, null, how);
      assert.equal(info.sameAsConnection, true);
      assert.equal(info.field, null, `${how}: the field never reaches the application`);
      assert.ok(!info.rawNames.includes('junction-client'), how);
      assert.ok(info.rawNames.includes('x-other'), how);
    });
  });

  test('handed-over connections count in /status; Server is Unit\'s on both paths', async () => {
    const [direct] = ports.get('compat')!;
    const before = (await j.api('GET', '/status/requests/total')).json as number;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await getWith(direct, '/', agent);
        assert.equal(r.headers.server, 'Unit/1.35.0');
      }
    } finally {
      agent.destroy();
    }
    await waitFor(async () => ((await j.api('GET', '/status/requests/total')).json as number) >= before + 5, 'the requests counted');
    const c = (await j.api('GET', '/status/connections')).json;
    assert.ok(c.accepted >= c.closed + c.active);
  });
});
