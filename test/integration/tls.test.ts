/**
 * TLS listeners through the real daemon (spec/router.md §10, control-api.md
 * §6.3, §9): bundles uploaded to /certificates, HTTPS served by every router
 * process, SNI, validation of certificate names, bundles in use, plain HTTP
 * on a TLS port, live switches, and the scheme applications see (Python,
 * PHP, Node, WebSocket over TLS). Certificates are made by the openssl command.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { FIXTURES, Junction, freePort, get as plainGet, waitFor } from './harness.ts';
import { nodeApp } from './apps-helpers.ts';

/** A self-signed certificate and its key in `dir`: [bundle PEM, certificate PEM]. */
function makeBundle(dir: string, name: string, cn: string, san: string): [string, string] {
  const key = path.join(dir, `${name}.key`);
  const crt = path.join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-nodes', '-newkey', 'rsa:2048', '-keyout', key, '-out', crt, '-days', '30',
    '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`], { stdio: 'ignore' });
  const cert = fs.readFileSync(crt, 'utf8');
  return [cert + fs.readFileSync(key, 'utf8'), cert];
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string; cn: string; socket: tls.TLSSocket }

describe('TLS listeners', () => {
  let j: Junction;
  let site: string;
  let other: string;
  let ca: string[];
  let port: number;
  let direct: number;
  let config: Record<string, any>;

  /** One HTTPS request to 127.0.0.1:`p` trusting the test certificates. */
  const get = (p: number, target: string, o: https.RequestOptions = {}): Promise<Answer> => new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: p, path: target, ca, servername: 'localhost', agent: false, ...o }, (res) => {
      const socket = res.socket as tls.TLSSocket;
      const cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cn, socket }));
    });
    req.on('error', reject);
    req.end();
  });

  before(async () => {
    // Hand-off on: a Node application behind a TLS listener must still get its connections through the router.
    j = await Junction.start({ env: { JUNCTION_HANDOFF: '1' } });
    let siteCert: string;
    let otherCert: string;
    [site, siteCert] = makeBundle(j.dir, 'site', 'localhost', 'DNS:localhost,IP:127.0.0.1');
    [other, otherCert] = makeBundle(j.dir, 'other', 'other.example', 'DNS:other.example');
    ca = [siteCert, otherCert];
    assert.equal((await j.api('PUT', '/certificates/site', site)).status, 200);
    assert.equal((await j.api('PUT', '/certificates/other', other)).status, 200);
    port = await freePort();
    direct = await freePort();
    config = {
      settings: { listen_threads: 2 },
      listeners: {
        [`127.0.0.1:${port}`]: { pass: 'routes', tls: { certificate: ['site', 'other'] } },
        [`127.0.0.1:${direct}`]: { pass: 'applications/compat', tls: { certificate: 'site' } },
      },
      routes: [
        { match: { uri: '/ws' }, action: { pass: 'applications/ws' } },
        { match: { uri: '/client' }, action: { pass: 'applications/compat' } },
        { match: { uri: '/wsgi' }, action: { pass: 'applications/wsgi' } },
        { match: { uri: '/server.php' }, action: { pass: 'applications/php' } },
        { match: { uri: '/https-only', scheme: 'http' }, action: { return: 403 } },
        { match: { uri: '/https-only' }, action: { return: 204 } },
        { action: { share: `${FIXTURES}/static$uri` } },
      ],
      applications: {
        ws: nodeApp('ws_app.cjs'),
        compat: nodeApp('compat_app.cjs'),
        wsgi: { type: 'python', path: path.join(FIXTURES, 'python'), module: 'wsgi_echo' },
        php: { type: 'php', root: path.join(FIXTURES, 'php', 'www') },
      },
    };
    await j.configure(config);
  });
  after(async () => { await j.cleanup(); });

  test('HTTPS with the uploaded bundle; keep-alive (curl and node:https)', async () => {
    const r = await get(port, '/');
    assert.equal(r.status, 200);
    assert.equal(r.body, fs.readFileSync(path.join(FIXTURES, 'static', 'index.html'), 'utf8'));
    assert.equal(r.cn, 'localhost');
    assert.equal(r.headers.server, 'Unit/1.35.0');
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const a = await get(port, '/', { agent });
      const b = await get(port, '/a.txt', { agent });
      assert.equal(b.status, 200);
      assert.equal(a.socket, b.socket, 'one connection for both requests');
    } finally {
      agent.destroy();
    }
    const crt = path.join(j.dir, 'site.crt');
    const out = execFileSync('curl', ['-sS', '--cacert', crt, '--resolve', `localhost:${port}:127.0.0.1`,
      '-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', `https://localhost:${port}/`, '-o', '/dev/null', `https://localhost:${port}/a.txt`], { encoding: 'utf8' });
    assert.deepEqual(out.trim().split('\n'), ['200 1', '200 0'], 'curl reused its connection');
  });

  test('SNI: each server name gets its bundle, unknown names the first', async () => {
    assert.equal((await get(port, '/', { servername: 'other.example' })).cn, 'other.example');
    assert.equal((await get(port, '/', { servername: 'localhost' })).cn, 'localhost');
    const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'nobody.example', rejectUnauthorized: false }, () => resolve(c));
      c.on('error', reject);
    });
    assert.equal(s.getPeerCertificate().subject.CN, 'localhost');
    s.destroy();
  });

  test('applications see https: WSGI, PHP, Node, and WebSocket over TLS', async () => {
    const environ = JSON.parse((await get(port, '/wsgi')).body);
    assert.equal(environ['wsgi.url_scheme'], 'https');
    const php = JSON.parse((await get(port, '/server.php')).body);
    assert.equal(php.server.HTTPS, 'on');
    for (const p of [port, direct]) {
      const client = JSON.parse((await get(p, '/client')).body);
      assert.equal(client.encrypted, true, `Node application behind ${p === port ? 'routes' : 'its own listener'}`);
      assert.equal(client.remoteAddress, '127.0.0.1');
    }
    assert.equal((await get(port, '/https-only')).status, 204, 'match.scheme sees https');

    // No server name for an address: the first bundle, whose alt names include 127.0.0.1.
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(String(d)));
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    await waitFor(() => messages.length === 1, 'the welcome message');
    assert.equal(messages.shift(), 'welcome /ws from 127.0.0.1');
    ws.send('over tls');
    await waitFor(() => messages.length === 1, 'the echo');
    assert.equal(messages.shift(), 'echo: over tls');
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));
  });

  test('plain HTTP on the TLS port: 400 "The plain HTTP request was sent to HTTPS port"', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      const parts: Buffer[] = [];
      s.on('data', (d) => parts.push(d));
      s.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
      s.on('error', reject);
      s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    assert.match(text, /^HTTP\/1\.1 400 The plain HTTP request was sent to HTTPS port\r\n/);
    assert.match(text, /\r\nConnection: close\r\n/);
    assert.ok(text.endsWith('<!DOCTYPE html><title>Error 497</title><p>Error 497.\r\n'), text);
    // A TLS handshake that fails closes only that connection.
    await assert.rejects(new Promise((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, ca: [] }, () => resolve(c));
      c.on('error', reject);
    }));
    assert.equal((await get(port, '/')).status, 200);
  });

  test('every router process serves the TLS listener', async () => {
    const routers = j.pidsOf('junction: router');
    assert.equal(routers.length, 2);
    for (const stopped of routers) {
      // The other router accepts everything while this one is stopped.
      process.kill(stopped, 'SIGSTOP');
      try {
        const rs = await Promise.all(Array.from({ length: 8 }, () => get(port, '/a.txt')));
        assert.deepEqual(rs.map((r) => r.status), Array(8).fill(200));
      } finally {
        process.kill(stopped, 'SIGCONT');
      }
    }
  });

  test('an unknown certificate is refused as Unit does; the old configuration keeps serving', async () => {
    const r = await j.api('PUT', `/config/listeners/127.0.0.1:${port}/tls/certificate`, '"ghost"');
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'Invalid configuration.', detail: 'Certificate "ghost" is not found.' });
    const empty = await j.api('PUT', `/config/listeners/127.0.0.1:${port}/tls/certificate`, '[]');
    assert.deepEqual(empty.json, { error: 'Invalid configuration.', detail: 'The "certificate" array must contain at least one element.' });
    assert.equal((await get(port, '/', { servername: 'other.example' })).cn, 'other.example');
  });

  test('a bundle in use cannot be deleted; once unused it can', async () => {
    const used = await j.api('DELETE', '/certificates/other');
    assert.equal(used.status, 400);
    assert.deepEqual(used.json, { error: 'Certificate is used in the configuration.' });
    assert.equal((await j.api('PUT', `/config/listeners/127.0.0.1:${port}/tls/certificate`, '["site"]')).status, 200);
    assert.equal((await get(port, '/', { servername: 'other.example', checkServerIdentity: () => undefined })).cn, 'localhost');
    assert.deepEqual((await j.api('DELETE', '/certificates/other')).json, { success: 'Certificate deleted.' });
    assert.equal((await j.api('PUT', '/certificates/other', other)).status, 200);
    assert.equal((await j.api('PUT', `/config/listeners/127.0.0.1:${port}/tls/certificate`, '["site", "other"]')).status, 200);
  });

  test('plain → TLS → plain, live: open connections keep going', async () => {
    const name = `127.0.0.1:${port}`;
    const plainAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    // One router: both requests of a kept-alive connection are certainly served by the same process.
    await j.configure({ ...config, settings: { listen_threads: 1 } });
    try {
      const secure = await get(port, '/', { agent: tlsAgent });
      assert.equal(secure.status, 200);
      assert.equal((await j.api('DELETE', `/config/listeners/${name}/tls`)).status, 200);
      assert.equal((await plainGet(port, '/https-only')).status, 403, 'new connections are plain');
      const again = await get(port, '/', { agent: tlsAgent });
      assert.equal(again.socket, secure.socket, 'the TLS connection kept going');
      assert.equal(again.status, 200);

      const plain = await new Promise<net.Socket>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/', agent: plainAgent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.socket));
        }).on('error', reject);
      });
      assert.equal((await j.api('PUT', `/config/listeners/${name}/tls`, { certificate: 'site' })).status, 200);
      assert.equal((await get(port, '/https-only')).status, 204, 'new connections are TLS');
      const still = await new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/https-only', agent: plainAgent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: res.socket }));
        }).on('error', reject);
      });
      assert.equal(still.socket, plain, 'the plain connection kept going');
      assert.equal(still.status, 403);
    } finally {
      plainAgent.destroy();
      tlsAgent.destroy();
      await j.configure(config);
    }
  });

  test('the TLS listener comes back after a restart', async () => {
    await j.stop('SIGTERM');
    await j.run({ env: { JUNCTION_HANDOFF: '1' } });
    assert.equal((await get(port, '/', { servername: 'other.example' })).cn, 'other.example');
  });
});
