/**
 * `php` script selection and `$_SERVER` (spec/applications.md §3.3, §4.4),
 * through a real php-cgi.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PhpServer, FIXTURES, WWW, tempDir } from './php-harness.ts';
import { decodeNameValues } from '../../src/apps/transport/fastcgi.ts';

type Json = Record<string, unknown>;
interface Info { server: Record<string, string>; get: Json; cookie: Json; cwd: string; env: string | false }

let tmp: string;
let php: PhpServer;
let root: string;

before(async () => {
  tmp = tempDir();
  // A root reached through a symlink with a trailing slash: DOCUMENT_ROOT is its realpath without it.
  root = fs.realpathSync(WWW);
  fs.symlinkSync(root, path.join(tmp, 'www-link'));
  // ELOOP cases (403): a self-referencing link, as a PHP script and as a plain path.
  fs.mkdirSync(path.join(tmp, 'root'));
  for (const f of fs.readdirSync(root)) fs.symlinkSync(path.join(root, f), path.join(tmp, 'root', f));
  fs.symlinkSync('loop.php', path.join(tmp, 'root', 'loop.php'));
  fs.symlinkSync('loop', path.join(tmp, 'root', 'loop'));
  php = await new PhpServer({
    type: 'php',
    root: path.join(tmp, 'root') + '/',
    environment: { JUNCTION_TEST_ENV: 'from-environment' },
  }, tmp).start();
  root = fs.realpathSync(path.join(tmp, 'root'));
});

after(async () => {
  await php?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('$_SERVER carries Unit\'s request variables', async () => {
  const info = await php.json<Info>('/server.php?a=1&b=x%20y', {
    headers: { Host: 'Example.COM.:8080', 'X-A': ['1', '2'], Cookie: 'c1=v1; c2=v2', 'User-Agent': 'test-agent' },
  });
  const s = info.server;
  assert.equal(s.SERVER_SOFTWARE, 'Unit/1.35.0');
  assert.equal(s.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.equal(s.REQUEST_METHOD, 'GET');
  assert.equal(s.REQUEST_URI, '/server.php?a=1&b=x%20y');
  assert.equal(s.QUERY_STRING, 'a=1&b=x%20y');
  assert.equal(s.SCRIPT_NAME, '/server.php');
  assert.equal(s.SCRIPT_FILENAME, `${root}/server.php`);
  assert.equal(s.PHP_SELF, '/server.php');
  assert.equal(s.DOCUMENT_ROOT, root);
  assert.equal('PATH_INFO' in s, false);
  assert.equal(s.SERVER_NAME, 'example.com');
  assert.equal(s.SERVER_PORT, String(php.port));
  assert.equal(s.SERVER_ADDR, '127.0.0.1');
  assert.equal(s.REMOTE_ADDR, '127.0.0.1');
  assert.equal('HTTPS' in s, false);
  assert.equal(s.HTTP_X_A, '1, 2');
  assert.equal(s.HTTP_HOST, 'Example.COM.:8080');
  assert.equal(s.HTTP_USER_AGENT, 'test-agent');
  assert.equal('CONTENT_LENGTH' in s, false);
  assert.equal('CONTENT_TYPE' in s, false);
  assert.deepEqual(info.get, { a: '1', b: 'x y' });
  assert.deepEqual(info.cookie, { c1: 'v1', c2: 'v2' });
  // The script runs in its own directory, with the app's environment.
  assert.equal(info.cwd, root);
  assert.equal(info.env, 'from-environment');
  // The launch's socket variables do not leak into the application.
  assert.equal('LISTEN_FDS' in s, false);
  assert.equal('LISTEN_PID' in s, false);
});

test('an empty query gives QUERY_STRING ""', async () => {
  for (const target of ['/server.php', '/server.php?']) {
    const { server } = await php.json<Info>(target);
    assert.equal(server.QUERY_STRING, '', target);
    assert.equal(server.REQUEST_URI, target);
  }
});

test('.php/ splits PATH_INFO; PHP_SELF is the whole path', async () => {
  const { server } = await php.json<Info>('/server.php/x/y%20z?q=1');
  assert.equal(server.SCRIPT_NAME, '/server.php');
  assert.equal(server.PATH_INFO, '/x/y z');
  assert.equal(server.PHP_SELF, '/server.php/x/y z');
  assert.equal(server.SCRIPT_FILENAME, `${root}/server.php`);
  assert.equal(server.REQUEST_URI, '/server.php/x/y%20z?q=1');
});

test('a script in a subdirectory runs there', async () => {
  const info = await php.json<Info>('/sub/server.php');
  assert.equal(info.server.SCRIPT_NAME, '/sub/server.php');
  assert.equal(info.cwd, fs.realpathSync(path.join(root, 'sub')));
});

test('a path ending in / runs the index', async () => {
  let r = await php.request('/');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'index of /index.php');
  r = await php.request('/dir/');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'dir index');
});

test('a directory without its slash: 301 to the slash, query kept', async () => {
  let r = await php.request('/dir?q=1', { setHost: false });
  assert.equal(r.status, 301);
  assert.equal(r.headers.location, `http://localhost:${php.port}/dir/?q=1`);
  assert.equal(r.body.length, 0);
  r = await php.request('/dir', { headers: { Host: 'Site.Example' } });
  assert.equal(r.headers.location, `http://site.example:${php.port}/dir/`);
});

test('missing files: 404 with an empty body', async () => {
  for (const target of ['/nope', '/nope.php', '/nope/', '/nope.php/x', '/a.txt/x']) {
    const r = await php.request(target);
    assert.equal(r.status, 404, target);
    assert.equal(r.body.length, 0, target);
  }
});

test('an existing non-PHP file: 503 (PHP never serves static files)', async () => {
  const r = await php.request('/a.txt');
  assert.equal(r.status, 503);
  assert.match(r.text, /<title>Error 503<\/title>/);
});

test('ELOOP: 403', async () => {
  for (const target of ['/loop.php', '/loop']) {
    const r = await php.request(target);
    assert.equal(r.status, 403, target);
  }
});

test('request fields: HTTP_* joined, CONTENT_* from the body fields', async () => {
  const r = await php.request('/server.php', {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain', 'X-Dash-Name': ['v', 'w'] },
    body: 'hello',
  });
  const s = (JSON.parse(r.text) as Info).server;
  assert.equal(s.REQUEST_METHOD, 'POST');
  assert.equal(s.CONTENT_TYPE, 'text/plain');
  assert.equal(s.CONTENT_LENGTH, '5');
  assert.equal(s.HTTP_CONTENT_LENGTH, '5');
  assert.equal(s.HTTP_CONTENT_TYPE, 'text/plain');
  assert.equal(s.HTTP_X_DASH_NAME, 'v, w');
});

test('Authorization fills PHP_AUTH_*', async () => {
  const { server } = await php.json<Info>('/server.php', {
    headers: { Authorization: `Basic ${Buffer.from('user:pa:ss').toString('base64')}` },
  });
  assert.equal(server.PHP_AUTH_USER, 'user');
  assert.equal(server.PHP_AUTH_PW, 'pa:ss');
});

test('HTTP/1.0 requests', async () => {
  const r = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(php.port, '127.0.0.1', () => sock.write('GET /server.php HTTP/1.0\r\n\r\n'));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString()));
    sock.on('error', reject);
  });
  const body = r.slice(r.indexOf('\r\n\r\n') + 4);
  const { server } = JSON.parse(body) as Info;
  assert.equal(server.SERVER_PROTOCOL, 'HTTP/1.0');
  assert.equal(server.SERVER_NAME, 'localhost');
});

test('script mode: every URI runs the script, no PATH_INFO', async () => {
  const dir = tempDir();
  const front = new PhpServer({ type: 'php', root: path.join(FIXTURES, 'script'), script: '/front.php' }, dir);
  try {
    await front.start();
    const scriptRoot = fs.realpathSync(path.join(FIXTURES, 'script'));
    for (const target of ['/', '/anything/at/all', '/x.php/y', '/front.php']) {
      const r = await front.json<Json>(target);
      assert.equal(r.script_name, '/front.php', target);
      assert.equal(r.script_filename, `${scriptRoot}/front.php`, target);
      assert.equal(r.php_self, '/front.php', target);
      assert.equal(r.path_info, null, target);
      assert.equal(r.request_uri, target);
      assert.equal(r.document_root, scriptRoot);
      assert.equal(r.cwd, scriptRoot);
    }
  } finally {
    await front.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('targets: each has its root/script; the first serves a pass without target', async () => {
  const dir = tempDir();
  const conf = {
    type: 'php',
    targets: {
      front: { root: path.join(FIXTURES, 'script'), script: 'front.php' },
      site: { root: WWW, index: 'server.php' },
    },
  };
  const a = new PhpServer(conf, dir, 'site');
  try {
    await a.start();
    const info = await a.json<Info>('/');
    assert.equal(info.server.SCRIPT_NAME, '/server.php');
    assert.equal(a.app.target('nope'), undefined);
    assert.equal(a.app.target(), a.app.target('front'));
    a.target = undefined;
    const r = await a.json<Json>('/whatever');
    assert.equal(r.script_name, '/front.php');
  } finally {
    await a.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('start failures carry Unit\'s messages', async () => {
  const dir = tempDir();
  try {
    const missing = new PhpServer({ type: 'php', root: '/nonexistent/root' }, dir);
    await assert.rejects(missing.app.prepare(), { message: 'root realpath(/nonexistent/root) failed (2: No such file or directory)' });
    const outside = new PhpServer({ type: 'php', root: WWW, script: '../script/front.php' }, dir);
    await assert.rejects(outside.app.prepare(), { message: 'script is not under php root' });
    const noScript = new PhpServer({ type: 'php', root: WWW, script: 'none.php' }, dir);
    await assert.rejects(noScript.app.prepare(), /^Error: script realpath\(.*\/none\.php\) failed \(2: No such file or directory\)$/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('many large fields: params span several FastCGI records', async () => {
  const headers: Record<string, string> = {};
  for (let i = 0; i < 40; i++) headers[`X-Big-${i}`] = String(i).padEnd(2000, 'v');
  const { server } = await php.json<Info>('/server.php', { headers });
  for (let i = 0; i < 40; i++) assert.equal(server[`HTTP_X_BIG_${i}`], String(i).padEnd(2000, 'v'));
});

test('a field too large for one FastCGI record: 500, the process serves on', async () => {
  const r = await php.request('/server.php', { headers: { 'X-Huge': 'h'.repeat(70_000) } });
  assert.equal(r.status, 500);
  const ok = await php.request('/server.php');
  assert.equal(ok.status, 200);
});

test('TLS requests: HTTPS=on, https redirects; default ports are left out of Location', async () => {
  const target = php.app.target()!;
  const http = await import('node:http');
  const req = new http.IncomingMessage(new net.Socket());
  req.method = 'GET';
  req.httpVersion = '1.1';
  const make = (p: string, tls: boolean, port: string, query = '') => ({
    req, res: undefined as never, target: p + (query ? `?${query}` : ''), path: p, query,
    remoteAddr: '10.0.0.1', localAddr: '10.0.0.2', localPort: port, serverName: 'example.org', tls,
    rawHeaders: ['Host', 'example.org'], fail() {},
  });
  const sel = await target.select(make('/server.php', true, '443'));
  assert.ok('params' in sel);
  // The records: BEGIN_REQUEST, then PARAMS records up to the empty one.
  const bytes = sel.params.bytes;
  const params = new Map<string, string>();
  for (let o = 0; o < bytes.length;) {
    const type = bytes[o + 1];
    const length = bytes.readUInt16BE(o + 4);
    if (type === 4) for (const [k, v] of Object.entries(decodeNameValues(bytes.subarray(o + 8, o + 8 + length)))) params.set(k, v);
    o += 8 + length + bytes[o + 6];
  }
  assert.equal(params.get('HTTPS'), 'on');
  assert.equal(params.get('SERVER_PORT'), '443');
  assert.equal(params.get('REMOTE_ADDR'), '10.0.0.1');
  assert.equal(params.get('SERVER_ADDR'), '10.0.0.2');
  assert.deepEqual(await target.select(make('/dir', true, '443', 'a=b')), { status: 301, location: 'https://example.org/dir/?a=b' });
  assert.deepEqual(await target.select(make('/dir', true, '8443')), { status: 301, location: 'https://example.org:8443/dir/' });
  assert.deepEqual(await target.select(make('/dir', false, '80')), { status: 301, location: 'http://example.org/dir/' });
  assert.deepEqual(await target.select(make('/dir', false, '443')), { status: 301, location: 'http://example.org:443/dir/' });
  // A Unix listener has no port.
  assert.deepEqual(await target.select(make('/dir', false, '')), { status: 301, location: 'http://example.org/dir/' });
});
