/**
 * TLS listeners in the router (spec/router.md §2.1, §10): HTTPS on the
 * listener's socket, SNI, the scheme requests and applications see, plain
 * HTTP on a TLS port (497), failed handshakes, live switches between plain
 * and TLS, sessions. Certificates are made by the openssl command.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { start, raw, one, until, waitLines, TestApps, type Started } from './helpers.ts';
import type { AppRequest } from '../../src/apps/types.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-tls-listener-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A self-signed EC certificate and its key (one PEM text), for `subj` and alt names `san`. */
function bundle(name: string, subj: string, san?: string): string {
  const key = path.join(dir, `${name}.key`);
  const crt = path.join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-keyout', key, '-out', crt, '-days', '2', '-subj', subj, ...(san ? ['-addext', `subjectAltName=${san}`] : [])], { stdio: 'ignore' });
  return fs.readFileSync(crt, 'utf8') + fs.readFileSync(key, 'utf8');
}

/** The certificate part of a bundle (what a client trusts). */
const certOf = (pem: string): string => pem.slice(0, pem.indexOf('-----BEGIN PRIVATE KEY-----'));

const BUNDLES = {
  site: bundle('site', '/CN=localhost', 'DNS:localhost,IP:127.0.0.1'),
  a: bundle('a', '/CN=a.example', 'DNS:a.example'),
  wild: bundle('wild', '/CN=wild', 'DNS:*.b.example'),
};
const CA = Object.values(BUNDLES).map(certOf);

interface Answer { status: number; body: string; cn: string; reused: boolean; socket: tls.TLSSocket }

/** One HTTPS request to 127.0.0.1:`port`, trusting the test certificates. */
function get(port: number, p: string, o: https.RequestOptions & { servername?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: p, ca: CA, servername: 'localhost', agent: false, ...o }, (res) => {
      const socket = res.socket as tls.TLSSocket;
      const cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      const reused = socket.isSessionReused();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cn, reused, socket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Connect with TLS and resolve with the socket once the handshake is done, or the error. */
function handshake(port: number, o: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: CA, servername: 'localhost', ...o }, () => resolve(s));
    s.on('error', reject);
  });
}

/** An application answering with what it was told about the request's scheme. */
function schemeApp(): TestApps {
  const apps = new TestApps();
  apps.targets.set('scheme', {
    serve(r: AppRequest) {
      const body = `tls=${r.tls}`;
      r.res.writeHead(200, { 'Content-Length': String(body.length) });
      r.res.end(body);
    },
  });
  return apps;
}

describe('TLS listener', () => {
  let s: Started;
  const log = path.join(dir, 'access.log');
  const routes = [
    { match: { uri: '/app' }, action: { pass: 'applications/scheme' } },
    { match: { scheme: 'https' }, action: { return: 200, location: 'secure' } },
    { action: { return: 404 } },
  ];
  const config = (listeners: Record<string, unknown>): Record<string, unknown> => ({
    listeners,
    routes,
    applications: { scheme: {} },
    access_log: { path: log, format: '$status $request_line' },
  });

  before(async () => {
    s = await start(config({ '*:8080': { pass: 'routes' } }), schemeApp());
  });
  after(async () => { await s.stop(); });

  const apply = (listener: Record<string, unknown>) => s.router.apply(config({ [s.listener]: listener }), {}, BUNDLES);

  test('HTTPS with keep-alive; match.scheme and applications see https', async () => {
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(s.port, '/', { agent });
      assert.equal(first.status, 200);
      assert.equal(first.cn, 'localhost');
      const app = await get(s.port, '/app', { agent });
      assert.equal(app.body, 'tls=true');
      assert.equal(app.socket, first.socket, 'the connection was kept alive');
    } finally {
      agent.destroy();
    }
  });

  test('`forwarded` protocol sets the scheme applications see, either way', async () => {
    const forwarded = { protocol: 'X-Forwarded-Proto', source: '127.0.0.1' };
    await apply({ pass: 'routes', forwarded });
    const plain = one(await raw(s.port, 'GET /app HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: HTTPS\r\nConnection: close\r\n\r\n'));
    assert.equal(plain.body, 'tls=true');
    await apply({ pass: 'routes', forwarded, tls: { certificate: 'site' } });
    const req = https.request({ host: '127.0.0.1', port: s.port, path: '/app', ca: CA, servername: 'localhost', agent: false,
      headers: { 'X-Forwarded-Proto': 'http' } });
    const body = await new Promise<string>((resolve, reject) => {
      req.on('response', (res) => { let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(b)); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'tls=false');
  });

  test('SNI picks the bundle by server name: exact, then one-label wildcard, else the first', async () => {
    await apply({ pass: 'routes', tls: { certificate: ['site', 'a', 'wild'] } });
    assert.equal((await get(s.port, '/', { servername: 'a.example' })).cn, 'a.example');
    assert.equal((await get(s.port, '/', { servername: 'x.b.example' })).cn, 'wild');
    assert.equal((await get(s.port, '/', { servername: 'localhost' })).cn, 'localhost');
    const other = await handshake(s.port, { servername: 'unknown.example', rejectUnauthorized: false });
    assert.equal(other.getPeerCertificate().subject.CN, 'localhost');
    other.destroy();
  });

  test('plain HTTP on the TLS port: Unit\'s 497 answer, logged as 497; parse errors first', async () => {
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    const text = await raw(s.port, 'GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const r = one(text);
    assert.equal(r.statusLine, 'HTTP/1.1 400 The plain HTTP request was sent to HTTPS port');
    assert.match(r.body, /Error 497/);
    assert.equal(r.get('Connection'), 'close');
    await waitLines(log, 1);
    await until(() => fs.readFileSync(log, 'utf8').includes('497 GET /x HTTP/1.1\n'));
    assert.match(await raw(s.port, 'GET / HTTP/2.0\r\n\r\n'), /^HTTP\/1\.1 505 /);
  });

  test('a failed handshake closes that connection only', async () => {
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    // A TLS record header followed by garbage: at most an alert record, then the close.
    const garbage = await raw(s.port, Buffer.from('16030100050102030405', 'hex'));
    assert.ok(garbage === '' || garbage.charCodeAt(0) === 0x15, JSON.stringify(garbage));
    await assert.rejects(handshake(s.port, { ca: [] }), /self-signed|unable to verify/);
    await assert.rejects(handshake(s.port, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA', minVersion: 'TLSv1.2' }));
    assert.equal((await get(s.port, '/')).status, 200);
  });

  test('connections given up during the handshake are closed (no descriptor left behind)', { timeout: 10_000 }, async () => {
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    const fds = (): number => fs.readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 20; i++) {
      // The client refuses the certificate: with TLS 1.3 it just leaves before finishing.
      await new Promise<void>((resolve) => {
        const c = tls.connect({ host: '127.0.0.1', port: s.port, ca: [] });
        c.on('error', () => {});
        c.on('close', () => resolve());
      });
      // Half a handshake record, then the client closes.
      await raw(s.port, Buffer.from('1603', 'hex'), '127.0.0.1', true);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(fds() <= before + 2, `descriptors: ${before} before, ${fds()} after`);
  });

  test('a Unix socket listener serves TLS', async () => {
    const sock = path.join(dir, 'tls.sock');
    await s.router.apply(config({ [s.listener]: { pass: 'routes' }, [`unix:${sock}`]: { pass: 'routes', tls: { certificate: 'site' } } }), {}, BUNDLES);
    try {
      const r = await get(0, '/app', { socketPath: sock });
      assert.equal(r.body, 'tls=true');
    } finally {
      await apply({ pass: 'routes' });
    }
  });

  test('the handshake is bounded by idle_timeout', async () => {
    const c = config({ [s.listener]: { pass: 'routes', tls: { certificate: 'site' } } });
    await s.router.apply({ ...c, settings: { http: { idle_timeout: 1 } } }, {}, BUNDLES);
    try {
      const began = Date.now();
      const closed = await new Promise<number>((resolve) => {
        const sock = net.connect(s.port, '127.0.0.1');
        sock.on('error', () => {});
        sock.on('close', () => resolve(Date.now() - began));
        sock.write(Buffer.from([0x16]));
      });
      assert.ok(closed >= 900 && closed < 5000, `closed after ${closed} ms`);
    } finally {
      await apply({ pass: 'routes', tls: { certificate: 'site' } });
    }
  });

  test('switching plain → TLS → plain is live; open connections keep going', async () => {
    await apply({ pass: 'routes' });
    const plainAgent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 });
    const tlsAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const plainGet = (p: string) => new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
      import('node:http').then((http) => {
        const req = http.request({ host: '127.0.0.1', port: s.port, path: p, agent: plainAgent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: res.socket }));
        });
        req.on('error', reject);
        req.end();
      }, reject);
    });
    try {
      const before = await plainGet('/');
      assert.equal(before.status, 404, 'plain: match.scheme https does not match');
      await apply({ pass: 'routes', tls: { certificate: 'site' } });
      const again = await plainGet('/');
      assert.equal(again.socket, before.socket, 'the plain connection from before kept going');
      assert.equal(again.status, 404);
      assert.equal((await get(s.port, '/', { agent: tlsAgent })).status, 200);
      await apply({ pass: 'routes', tls: { certificate: 'a' } });
      const kept = await get(s.port, '/', { agent: tlsAgent });
      assert.equal(kept.cn, 'localhost', 'the TLS connection from before keeps its certificate');
      assert.equal((await get(s.port, '/', { servername: 'a.example' })).cn, 'a.example');
      await apply({ pass: 'routes' });
      assert.equal((await get(s.port, '/', { agent: tlsAgent })).status, 200, 'the TLS connection keeps going');
      const fresh = one(await raw(s.port, 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
      assert.equal(fresh.status, 404, 'new connections are plain again');
    } finally {
      plainAgent.destroy();
      tlsAgent.destroy();
    }
  });

  test('a bundle that does not load refuses the configuration; the old one keeps serving', async () => {
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    await assert.rejects(apply({ pass: 'routes', tls: { certificate: 'ghost' } }), /certificate "ghost" is not available/);
    await assert.rejects(apply({ pass: 'routes', tls: { certificate: 'site', conf_commands: { VerifyMode: 'Peer' } } }),
      /listener "127\.0\.0\.1:\d+": TLS: unsupported command "VerifyMode"/);
    assert.equal((await get(s.port, '/')).status, 200);
  });

  test('sessions: resumed from the cache (cache_size) or with tickets; neither by default', async () => {
    const resumed = async (maxVersion: tls.SecureVersion): Promise<boolean> => {
      const first = await handshake(s.port, { maxVersion });
      const session = await new Promise<Buffer>((resolve) => {
        const got = first.getSession();
        if (got && maxVersion === 'TLSv1.2') resolve(got);
        else first.once('session', resolve);
      });
      first.end();
      const second = await handshake(s.port, { maxVersion, session });
      const reused = second.isSessionReused();
      second.destroy();
      return reused;
    };
    await apply({ pass: 'routes', tls: { certificate: 'site' } });
    assert.equal(await resumed('TLSv1.2'), false, 'no cache, no tickets');
    await apply({ pass: 'routes', tls: { certificate: 'site', session: { cache_size: 10, timeout: 60 } } });
    assert.equal(await resumed('TLSv1.2'), true, 'TLS 1.2 session ID from the cache');
    await apply({ pass: 'routes', tls: { certificate: 'site', session: { tickets: true } } });
    assert.equal(await resumed('TLSv1.3'), true, 'TLS 1.3 ticket');
  });
});
