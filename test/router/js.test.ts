import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { start, request, one, tmpdir, waitLines, TestHost, TestApps, freePort } from './helpers.ts';
import { Router } from '../../src/router/router.ts';

/** `return 204` with an `X-R` header holding the template's expansion. */
const echo = (template: string, match?: Record<string, unknown>) =>
  ({ ...(match ? { match } : {}), action: { return: 204, response_headers: { 'X-R': template } } });

test('JS template parameters: uri, host, remoteAddr, args, headers, cookies, vars', async () => {
  const s = await start({ routes: [
    { match: { uri: '/uri/*' }, action: { return: 204, response_headers: { 'X-R': '`${uri}|${host}|${remoteAddr}`' } } },
    echo('`${JSON.stringify(args)}`', { uri: '/args' }),
    echo('`${Object.keys(headers).join(",")}|${headers["X-A"]}|${headers["x-a"]}`', { uri: '/headers' }),
    echo('`${JSON.stringify(cookies)}`', { uri: '/cookies' }),
    echo('`${vars.method} ${vars.uri} ${vars.header_x_a} ${vars.arg_q} ${vars.nope} ${vars["request_uri"]}`', { uri: '/vars' }),
  ] });
  try {
    const u = one(await request(s.port, 'GET', '/uri/a%20b/../c', ['Host: Example.COM.:8080']));
    assert.equal(u.get('x-r'), '/uri/c|example.com|127.0.0.1');
    const a = one(await request(s.port, 'GET', '/args?a=1&b=x+y&a=2&c&d=%41'));
    assert.deepEqual(JSON.parse(a.get('x-r')!), { a: ['1', '2'], b: 'x y', c: '', d: 'A' });
    const h = one(await request(s.port, 'GET', '/headers', ['X-A: first', 'X-A: second']));
    assert.equal(h.get('x-r'), 'Host,X-A,Connection|first|undefined');
    const c = one(await request(s.port, 'GET', '/cookies', ['Cookie: a=1; b=2', 'Cookie: a=3']));
    assert.deepEqual(JSON.parse(c.get('x-r')!), { a: '1', b: '2' });
    const v = one(await request(s.port, 'GET', '/vars?q=z', ['X-A: h']));
    assert.equal(v.get('x-r'), 'GET /vars h z undefined /vars?q=z');
  } finally { await s.stop(); }
});

test('JS templates in pass, return location, share, rewrite, match.if and the access log', async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'f.txt'), 'file');
  const log = path.join(dir, 'access.log');
  const s = await start({
    routes: {
      main: [
        { match: { uri: '/p/*' }, action: { pass: '`routes/${uri.split("/")[2]}`' } },
        { match: { uri: '/loc' }, action: { return: 302, location: '`https://${host}${uri}?${args.x}`' } },
        { match: { uri: '/s/*' }, action: { share: `\`${dir}/\${uri.slice(3)}\`` } },
        { match: { uri: '/rw/*' }, action: { rewrite: '`/new${uri}`', pass: 'routes/b' } },
        { match: { if: '`${args.ok === "1"}`' }, action: { return: 200 } },
      ],
      a: [{ action: { return: 201 } }],
      b: [{ match: { uri: '/new/rw/x' }, action: { return: 202 } }],
    },
    listeners: { '*:8080': { pass: 'routes/main' } },
    access_log: { path: log, format: '`${vars.status} ${uri} ${headers["X-Log"] || "-"}`' },
  });
  try {
    assert.equal(one(await request(s.port, 'GET', '/p/a')).status, 201);
    assert.equal(one(await request(s.port, 'GET', '/p/zzz')).status, 404);
    const loc = one(await request(s.port, 'GET', '/loc?x=q', ['Host: h.example']));
    assert.equal(loc.get('location'), 'https://h.example/loc?q');
    const f = one(await request(s.port, 'GET', '/s/f.txt'));
    assert.equal(f.status, 200);
    assert.equal(f.body, 'file');
    assert.equal(one(await request(s.port, 'GET', '/rw/x')).status, 202);
    assert.equal(one(await request(s.port, 'GET', '/?ok=1')).status, 200);
    assert.equal(one(await request(s.port, 'GET', '/?ok=0')).status, 404);
    const lines = await waitLines(log, 7);
    assert.equal(lines[0], '201 /p/a -');
    assert.equal(lines[6], '404 / -');
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('a JS exception or a runaway template → 500, logged as js exception, no access-log line', async () => {
  const dir = tmpdir();
  const log = path.join(dir, 'access.log');
  const s = await start({
    routes: [
      { match: { uri: '/throw' }, action: { pass: '`${blah.x}`' } },
      { match: { uri: '/loop' }, action: { return: 302, location: '`${(() => { for (;;); })()}`' } },
      { match: { uri: '/promise' }, action: { return: 302, location: '`${Promise.resolve().then(() => { for (;;); }), "p"}`' } },
      { match: { uri: '/headers' }, action: { return: 200, response_headers: { 'X-A': '`${null.x}`' } } },
      { match: { uri: '/memory' }, action: { return: 302, location: '`${(() => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); })()}`' } },
      { action: { return: 204 } },
    ],
    access_log: { path: log, format: '$uri $status' },
  });
  try {
    const t = one(await request(s.port, 'GET', '/throw'));
    assert.equal(t.status, 500);
    assert.equal(t.get('content-length'), '54');
    assert.ok(s.host.log.lines.some((l) => l.startsWith('[error] js exception: ReferenceError: blah is not defined')), s.host.log.lines.join('\n'));
    assert.equal(one(await request(s.port, 'GET', '/loop')).status, 500);
    assert.equal(one(await request(s.port, 'GET', '/promise')).status, 500);
    assert.equal(one(await request(s.port, 'GET', '/memory')).status, 500);
    const h = one(await request(s.port, 'GET', '/headers'));
    assert.equal(h.status, 500);
    assert.equal(h.body, '<!DOCTYPE html><title>Error 500</title><p>Error 500.\r\n');
    // The router still serves, and only the successful request was logged.
    assert.equal(one(await request(s.port, 'GET', '/ok')).status, 204);
    const lines = await waitLines(log, 1);
    assert.deepEqual(lines, ['/ok 204']);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('templates cannot reach the router: no process, require, or the router\'s Function', async () => {
  const s = await start({ routes: [
    echo('`${typeof process}|${typeof require}|${typeof globalThis.process}|${typeof module}|${typeof setTimeout}`', { uri: '/globals' }),
    echo('`${(() => { try { return typeof headers.constructor.constructor("return process")(); } catch (e) { return e.name; } })()}`', { uri: '/ctor' }),
    echo('`${(() => { try { return typeof vars.constructor.constructor("return process")(); } catch (e) { return e.name; } })()}`', { uri: '/vars' }),
    echo('`${(() => { try { return typeof this.constructor.constructor("return process")(); } catch (e) { return e.name; } })()}`', { uri: '/this' }),
    echo('`${btoa("user:password")}|${atob("dXNlcjpwYXNzd29yZA==")}`', { uri: '/b64' }),
  ] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/globals')).get('x-r'), 'undefined|undefined|undefined|undefined|undefined');
    assert.equal(one(await request(s.port, 'GET', '/ctor')).get('x-r'), 'ReferenceError');
    // `vars.constructor` is no Unit variable: undefined.
    assert.equal(one(await request(s.port, 'GET', '/vars')).get('x-r'), 'TypeError');
    assert.equal(one(await request(s.port, 'GET', '/this')).get('x-r'), 'TypeError');
    assert.equal(one(await request(s.port, 'GET', '/b64')).get('x-r'), 'dXNlcjpwYXNzd29yZA==|user:password');
  } finally { await s.stop(); }
});

test('settings.js_module: each module is a global bound to its default export; imports; per-configuration context', async () => {
  const port = await freePort();
  const listener = `127.0.0.1:${port}`;
  const host = new TestHost();
  const router = new Router(host, new TestApps());
  const modules = {
    http: 'import util from "util";\nvar http = {};\nhttp.route = function (h) { return h["Authorization"] ? util.ok : "no"; };\nexport default http;\n',
    util: 'export default { ok: "yes", n: 0 };\n',
    counter: 'let n = 0;\nexport default function next() { return ++n; }\n',
    bad: 'export default (function () { throw new Error("boom"); })();\n',
    loop: 'for (;;);\nexport default 1;\n',
  };
  const config = (use: string | string[]) => ({
    listeners: { [listener]: { pass: 'routes' } },
    routes: [
      echo('`${http.route(headers)}`', { uri: '/auth' }),
      echo('`${counter()}`', { uri: '/count' }),
      echo('`${typeof util}`', { uri: '/util' }),
    ],
    settings: { js_module: use },
  });
  try {
    await router.apply(config(['http', 'counter']), modules);
    assert.equal(one(await request(port, 'GET', '/auth', ['Authorization: Basic x'])).get('x-r'), 'yes');
    assert.equal(one(await request(port, 'GET', '/auth')).get('x-r'), 'no');
    // Imported but not listed: not a global.
    assert.equal(one(await request(port, 'GET', '/util')).get('x-r'), 'undefined');
    assert.equal(one(await request(port, 'GET', '/count')).get('x-r'), '1');
    assert.equal(one(await request(port, 'GET', '/count')).get('x-r'), '2');
    // A new configuration starts from fresh modules.
    await router.apply(config(['http', 'counter']), modules);
    assert.equal(one(await request(port, 'GET', '/count')).get('x-r'), '1');
    // Modules that are missing or throw make the configuration fail to apply; the previous one keeps serving.
    await assert.rejects(router.apply(config(['http', 'counter', 'nope']), modules), /JS module "nope" is not found/);
    await assert.rejects(router.apply(config(['counter', 'bad']), modules), /boom/);
    await assert.rejects(router.apply(config('http'), { http: modules.http }), /JS module "util" is not found/);
    assert.equal(one(await request(port, 'GET', '/count')).get('x-r'), '2');
    // So does a module that never finishes (the JavaScript thread is replaced: module state starts afresh).
    await assert.rejects(router.apply(config(['counter', 'loop']), modules), /"loop": JavaScript ran longer than/);
    assert.equal(one(await request(port, 'GET', '/auth', ['Authorization: Basic x'])).get('x-r'), 'yes');
    assert.equal(one(await request(port, 'GET', '/count')).get('x-r'), '1');
  } finally { await router.shutdown(false); }
});

test('a failing JS response header turns an application\'s response into the 500 page', async () => {
  const apps = new TestApps();
  apps.targets.set('app', {
    serve(r) {
      r.res.writeHead(200, { 'Content-Type': 'text/plain' });
      r.res.write('partial ');
      setImmediate(() => r.res.end('body'));
    },
  });
  const s = await start({ applications: { app: {} }, routes: [
    { match: { uri: '/ok' }, action: { pass: 'applications/app', response_headers: { 'X-U': '`${uri}`' } } },
    { action: { pass: 'applications/app', response_headers: { 'X-A': '`${headers.nope.x}`' } } },
  ] }, apps);
  try {
    const ok = one(await request(s.port, 'GET', '/ok'));
    assert.equal(ok.get('x-u'), '/ok');
    assert.equal(ok.body, 'partial body');
    const r = one(await request(s.port, 'GET', '/bad'));
    assert.equal(r.status, 500);
    assert.equal(r.get('content-type'), 'text/html');
    assert.equal(r.get('connection'), 'close');
    assert.equal(r.body, '<!DOCTYPE html><title>Error 500</title><p>Error 500.\r\n');
  } finally { await s.stop(); }
});
