/**
 * PHP applications through the real daemon (spec/applications.md §3.3, §4.4,
 * §2.3, §5): `type: "php"` run by Debian's php-cgi, configured over the
 * control socket as a Unit user would, and checked from an HTTP client:
 * `$_SERVER`, script selection (index, 301, 404, `script`, `targets`), form
 * posts, cookies, sessions, `processes` and `limits.requests`, a start
 * failure, and Debian's Adminer.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FIXTURES, Junction, freePort, get, request, waitFor, type Response } from './harness.ts';

const PHP = path.join(FIXTURES, 'php');
const WWW = fs.realpathSync(path.join(PHP, 'www'));
const SCRIPT_ROOT = fs.realpathSync(path.join(PHP, 'script'));
/** Debian's Adminer as its package sets it up for Apache: /etc/adminer/conf.php loading /usr/share/adminer. */
const ADMINER = '/etc/adminer';
const adminerInstalled = fs.existsSync(path.join(ADMINER, 'conf.php')) && fs.existsSync('/usr/share/adminer/adminer.php');

type Json = Record<string, unknown>;
interface Info { server: Record<string, string>; get: Json; cookie: Json; cwd: string; env: string | false }

function json<T = Json>(r: Response): T {
  assert.equal(r.status, 200, r.body.slice(0, 500));
  return JSON.parse(r.body) as T;
}

/** The values of every `name: value` line of the raw Set-Cookie fields, as name → value. */
function cookies(r: Response): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of r.headers['set-cookie'] ?? []) {
    const [pair] = c.split(';');
    const eq = pair.indexOf('=');
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

describe('php applications', () => {
  let j: Junction;
  let sessions: string;
  const port: Record<string, number> = {};
  let config: Record<string, unknown>;

  before(async () => {
    j = await Junction.start();
    sessions = path.join(j.dir, 'sessions');
    fs.mkdirSync(sessions);
    for (const name of ['www', 'front', 'multi', 'pool', 'adminer']) port[name] = await freePort();
    const applications: Record<string, unknown> = {
      www: {
        type: 'php',
        root: path.join(PHP, 'www') + '/',
        environment: { JUNCTION_TEST_ENV: 'from-environment' },
        options: { admin: { 'session.save_path': sessions } },
      },
      front: { type: 'php 8', root: path.join(PHP, 'script'), script: 'front.php' },
      multi: {
        type: 'php',
        targets: {
          site: { root: path.join(PHP, 'www') },
          app: { root: path.join(PHP, 'script'), script: '/front.php' },
        },
      },
      pool: { type: 'php', root: path.join(PHP, 'www'), processes: 2, limits: { requests: 3 } },
    };
    const listeners: Record<string, unknown> = {
      [`127.0.0.1:${port.www}`]: { pass: 'applications/www' },
      [`127.0.0.1:${port.front}`]: { pass: 'applications/front' },
      [`127.0.0.1:${port.multi}`]: { pass: 'routes' },
      [`127.0.0.1:${port.pool}`]: { pass: 'applications/pool' },
    };
    if (adminerInstalled) {
      applications.adminer = {
        type: 'php', root: ADMINER, index: 'conf.php',
        options: { admin: { 'session.save_path': sessions } },
      };
      listeners[`127.0.0.1:${port.adminer}`] = { pass: 'applications/adminer' };
    }
    config = {
      listeners,
      routes: [
        { match: { uri: '/app/*' }, action: { pass: 'applications/multi/app' } },
        { action: { pass: 'applications/multi' } },
      ],
      applications,
    };
    await j.configure(config);
  });

  after(async () => { await j?.cleanup(); });

  test('/status lists the php module; "php 8" selects it', async () => {
    const status = (await j.api('GET', '/status')).json;
    const php = status.modules.php;
    assert.ok(php, JSON.stringify(status.modules));
    const list = Array.isArray(php) ? php : [php];
    assert.match(list[0].version, /^8\.\d+\.\d+$/);
    assert.match(list[0].lib, /php-cgi/);
    assert.equal(status.applications.www.processes.running, 1);
    const missing = await j.api('PUT', '/config/applications/nine', { type: 'php 9', root: WWW });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json, {
      error: 'Invalid configuration.',
      detail: 'The module to run "php 9" is not found among the available application modules.',
    });
  });

  test('$_SERVER as the script sees it', async () => {
    const info = json<Info>(await get(port.www, '/server.php/extra/p%20th?a=1&b=x%20y', {
      Host: 'Example.COM.:8080', 'User-Agent': 'test-agent', Cookie: 'c1=v1; c2=v2',
      // Two fields of one name: joined with ", " in arrival order.
      'X-Multi': ['one', 'two'] as unknown as string,
    }));
    const s = info.server;
    assert.equal(s.SCRIPT_NAME, '/server.php');
    assert.equal(s.SCRIPT_FILENAME, `${WWW}/server.php`);
    assert.equal(s.PATH_INFO, '/extra/p th');
    assert.equal(s.PHP_SELF, '/server.php/extra/p th');
    assert.equal(s.DOCUMENT_ROOT, WWW);
    assert.equal(s.REQUEST_URI, '/server.php/extra/p%20th?a=1&b=x%20y');
    assert.equal(s.QUERY_STRING, 'a=1&b=x%20y');
    assert.equal(s.REQUEST_METHOD, 'GET');
    assert.equal(s.SERVER_PROTOCOL, 'HTTP/1.1');
    assert.equal(s.SERVER_NAME, 'example.com');
    // The listener's port, not the Host field's.
    assert.equal(s.SERVER_PORT, String(port.www));
    assert.equal(s.SERVER_ADDR, '127.0.0.1');
    assert.equal(s.REMOTE_ADDR, '127.0.0.1');
    assert.equal(s.SERVER_SOFTWARE, 'Unit/1.35.0');
    assert.equal(s.HTTP_HOST, 'Example.COM.:8080');
    assert.equal(s.HTTP_USER_AGENT, 'test-agent');
    assert.equal(s.HTTP_X_MULTI, 'one, two');
    assert.equal(s.HTTP_COOKIE, 'c1=v1; c2=v2');
    assert.equal('HTTPS' in s, false);
    assert.equal('CONTENT_LENGTH' in s, false);
    assert.deepEqual(info.get, { a: '1', b: 'x y' });
    assert.deepEqual(info.cookie, { c1: 'v1', c2: 'v2' });
    assert.equal(info.env, 'from-environment');
    // The script runs in its own directory.
    assert.equal(info.cwd, WWW);
    assert.equal(json<Info>(await get(port.www, '/sub/server.php')).cwd, path.join(WWW, 'sub'));
    // Without PATH_INFO, PHP_SELF is SCRIPT_NAME; an absent query is "".
    const plain = json<Info>(await get(port.www, '/server.php')).server;
    assert.equal('PATH_INFO' in plain, false);
    assert.equal(plain.PHP_SELF, '/server.php');
    assert.equal(plain.QUERY_STRING, '');
    // Junction's own variables stay out of the application.
    for (const name of ['LISTEN_FDS', 'LISTEN_PID', 'JUNCTION_SETTINGS', 'NODE_CHANNEL_FD']) assert.equal(name in plain, false, name);
  });

  test('index for "/", 301 for a directory without its slash, 404 for what is missing', async () => {
    let r = await get(port.www, '/');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'index of /index.php');
    assert.equal(r.headers.server, 'Unit/1.35.0');
    r = await get(port.www, '/dir/');
    assert.equal(r.body, 'dir index');
    r = await get(port.www, '/dir?q=1', { Host: 'Site.Example' });
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, `http://site.example:${port.www}/dir/?q=1`);
    for (const target of ['/nope.php', '/nope', '/nope/', '/nope.php/x']) {
      r = await get(port.www, target);
      assert.equal(r.status, 404, target);
      assert.equal(r.body, '', target);
    }
    // PHP never serves static files.
    r = await get(port.www, '/a.txt');
    assert.equal(r.status, 503);
  });

  test('script: every URI runs the one script, without PATH_INFO', async () => {
    for (const target of ['/', '/anything/at/all?x=1', '/other.php/y', '/front.php']) {
      const r = json(await get(port.front, target));
      assert.equal(r.script_name, '/front.php', target);
      assert.equal(r.script_filename, `${SCRIPT_ROOT}/front.php`, target);
      assert.equal(r.php_self, '/front.php', target);
      assert.equal(r.path_info, null, target);
      assert.equal(r.request_uri, target);
      assert.equal(r.document_root, SCRIPT_ROOT);
      assert.equal(r.cwd, SCRIPT_ROOT);
    }
  });

  test('targets: a pass names one; a pass without a target uses the first', async () => {
    const front = json(await get(port.multi, '/app/some/where'));
    assert.equal(front.script_filename, `${SCRIPT_ROOT}/front.php`);
    assert.equal(front.request_uri, '/app/some/where');
    const site = json<Info>(await get(port.multi, '/server.php'));
    assert.equal(site.server.DOCUMENT_ROOT, WWW);
    assert.equal(site.server.SCRIPT_FILENAME, `${WWW}/server.php`);
    assert.equal((await get(port.multi, '/')).body, 'index of /index.php');
  });

  test('POST: form fields, raw body and an uploaded file', async () => {
    const form = json(await request({
      host: '127.0.0.1', port: port.www, method: 'POST', path: '/post.php',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'name=Jane+Doe&list%5B%5D=1&list%5B%5D=2',
    }));
    assert.equal(form.method, 'POST');
    assert.deepEqual(form.post, { name: 'Jane Doe', list: ['1', '2'] });
    assert.equal(form.content_type, 'application/x-www-form-urlencoded');
    assert.equal(form.content_length, '39');

    const boundary = 'xYzZy';
    const file = Buffer.alloc(100_000, 'q');
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nreport\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const upload = json(await request({
      host: '127.0.0.1', port: port.www, method: 'POST', path: '/post.php',
      headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` }, body,
    }));
    assert.deepEqual(upload.post, { title: 'report' });
    const doc = (upload.files as Record<string, Json>).doc;
    assert.equal(doc.name, 'a.bin');
    assert.equal(doc.size, file.length);
    assert.equal(doc.error, 0);
    assert.equal(doc.uploaded, true);

    // A chunked body reaches the script whole, with a Content-Length.
    const chunked = json(await request({
      host: '127.0.0.1', port: port.www, method: 'POST', path: '/post.php',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Transfer-Encoding': 'chunked' },
      body: 'k=v&w=z',
    }));
    assert.deepEqual(chunked.post, { k: 'v', w: 'z' });
    assert.equal(chunked.content_length, '7');
    assert.equal(chunked.transfer_encoding, null);
  });

  test('cookies: setcookie() and header() fields reach the client apart', async () => {
    const r = await get(port.www, '/headers.php?code=201');
    assert.equal(r.status, 201);
    assert.equal(r.body, 'headers sent');
    assert.equal(r.headers['x-custom'], 'one');
    assert.equal(r.headers['x-multi'], 'a, b');
    const set = r.headers['set-cookie'] ?? [];
    assert.equal(set.length, 3, JSON.stringify(set));
    assert.equal(set[0], 'first=1');
    assert.match(set[1], /^second=two%20words; path=\/x; HttpOnly$/);
    assert.match(set[2], /^third=3; SameSite=Strict$/);
    const redirect = await get(port.www, '/headers.php?location=/elsewhere');
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.location, '/elsewhere');
  });

  test('sessions carry state across requests', async () => {
    const first = await get(port.www, '/session.php');
    const one = json<{ n: number; id: string }>(first);
    assert.equal(one.n, 1);
    const sid = cookies(first).get('PHPSESSID');
    assert.equal(sid, one.id);
    let last = one;
    for (const n of [2, 3]) {
      last = json(await get(port.www, '/session.php', { Cookie: `PHPSESSID=${sid}` }));
      assert.deepEqual(last, { n, id: sid });
    }
    assert.ok(fs.existsSync(path.join(sessions, `sess_${sid}`)));
    // Another client starts its own.
    assert.equal(json<{ n: number }>(await get(port.www, '/session.php')).n, 1);
  });

  test('processes: 2 serve side by side; limits.requests replaces a process after 3 requests', async () => {
    const status = async () => (await j.api('GET', '/status')).json.applications.pool.processes;
    assert.equal((await status()).running, 2);
    // Two slow requests at once are taken by the two processes.
    const both = await Promise.all([get(port.pool, '/sleep.php?ms=300'), get(port.pool, '/sleep.php?ms=300')]);
    assert.deepEqual(both.map((r) => r.status), [200, 200]);
    assert.notEqual(both[0].body, both[1].body);
    // Each process serves at most 3 requests, then another takes its place.
    const served = new Map<string, number>();
    for (let i = 0; i < 12; i++) {
      const r = await get(port.pool, '/pid.php');
      assert.equal(r.status, 200);
      served.set(r.body, (served.get(r.body) ?? 0) + 1);
    }
    for (const [pid, n] of served) assert.ok(n <= 3, `process ${pid} served ${n} requests`);
    assert.ok(served.size >= 4, `only ${served.size} processes for 12 requests`);
    await waitFor(async () => (await status()).running === 2, 'two running processes again');
  });

  test('an application that cannot start: PUT fails with 500, the running configuration stays', async () => {
    const r = await j.api('PUT', '/config/applications/broken', { type: 'php', root: '/nonexistent/root' });
    assert.equal(r.status, 500);
    assert.equal(r.json.error, 'Failed to apply new configuration.');
    assert.deepEqual((await j.api('GET', '/config')).json, config);
    const log = j.logText();
    assert.match(log, /\[alert\] \d+#\d+ root realpath\(\/nonexistent\/root\) failed \(2: No such file or directory\)/);
    assert.match(log, /\[warn\] \d+#\d+ failed to start application "broken"/);
    assert.equal((await get(port.www, '/')).body, 'index of /index.php');

    // Started on demand (spare 0): the change applies, requests get 503.
    const lazy = await j.api('PUT', '/config/applications/lazy', { type: 'php', root: '/nonexistent/root', processes: { spare: 0 } });
    assert.equal(lazy.status, 200, lazy.body);
    const lazyPort = await freePort();
    assert.equal((await j.api('PUT', `/config/listeners/127.0.0.1:${lazyPort}`, { pass: 'applications/lazy' })).status, 200);
    assert.equal((await get(lazyPort, '/')).status, 503);
    assert.equal((await j.api('DELETE', `/config/listeners/127.0.0.1:${lazyPort}`)).status, 200);
    assert.equal((await j.api('DELETE', '/config/applications/lazy')).status, 200);
  });

  test('Debian\'s Adminer serves its login page', { skip: !adminerInstalled && 'adminer is not installed' }, async () => {
    const r = await get(port.adminer, '/');
    assert.equal(r.status, 200, r.body.slice(0, 500));
    assert.match(String(r.headers['content-type']), /^text\/html; charset=utf-8$/i);
    assert.match(r.body, /<title>Login - Adminer<\/title>/);
    assert.match(r.body, /<input[^>]+name="auth\[username\]"/);
    assert.ok(cookies(r).has('adminer_key'), JSON.stringify(r.headers['set-cookie']));
    assert.equal(r.headers['x-frame-options'], 'deny');
    // Its stylesheet comes from the same script.
    const css = await get(port.adminer, '/?file=default.css&version=4.8.1');
    assert.equal(css.status, 200);
    assert.match(String(css.headers['content-type']), /^text\/css/);
    assert.ok(css.raw.length > 1000);
  });
});
