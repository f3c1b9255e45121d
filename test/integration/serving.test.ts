/**
 * One configuration serving, through routes, a static directory, a redirect,
 * a real Flask app (WSGI) and an unmodified Express app; invalid changes are
 * rejected whole while the running configuration keeps serving.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, Junction, freePort, get, request } from './harness.ts';

describe('serving a mixed configuration', () => {
  let j: Junction;
  let port: number;
  let config: Record<string, unknown>;

  before(async () => {
    j = await Junction.start();
    port = await freePort();
    config = {
      listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
      routes: [
        { match: { uri: '/old/*' }, action: { return: 301, location: 'https://example.com$request_uri' } },
        { match: { uri: '/flask/*' }, action: { pass: 'applications/flask' } },
        { match: { uri: ['/express', '/express/*'] }, action: { pass: 'applications/express' } },
        { match: { method: 'GET' }, action: { share: path.join(FIXTURES, 'static') + '$uri' } },
      ],
      applications: {
        flask: {
          type: 'python',
          path: path.join(FIXTURES, 'flask'),
          module: 'app',
          callable: 'app',
          prefix: '/flask',
          environment: { GREETING: 'hello' },
        },
        express: {
          type: 'external',
          working_directory: path.join(FIXTURES, 'express'),
          executable: process.execPath,
          arguments: ['app.js'],
        },
      },
    };
    await j.configure(config);
  });

  after(async () => { await j.cleanup(); });

  test('static files from the share', async () => {
    const r = await get(port, '/a.txt');
    assert.equal(r.status, 200);
    assert.equal(r.body, '0123456789');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['content-length'], '10');
    assert.equal(r.headers.server, 'Unit/1.35.0');
    assert.match(String(r.headers.etag), /^"[0-9a-f]+-a"$/);
    const index = await get(port, '/');
    assert.equal(index.status, 200);
    assert.equal(index.body, '<h1>Junction</h1>\n');
    assert.equal(index.headers['content-type'], 'text/html');
    const dir = await get(port, '/dir?x=1');
    assert.equal(dir.status, 301);
    assert.equal(dir.headers.location, '/dir/?x=1');
    const missing = await get(port, '/nope.txt');
    assert.equal(missing.status, 404);
    assert.equal(missing.body, '<!DOCTYPE html><title>Error 404</title><p>Error 404.\r\n');
  });

  test('return 301 with $request_uri in the location', async () => {
    const r = await get(port, '/old/page?a=1');
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, 'https://example.com/old/page?a=1');
    assert.equal(r.headers['content-length'], '0');
  });

  test('a real Flask app answers through the router', async () => {
    const r = await get(port, '/flask/env?q=1', { Host: 'Example.COM:8080' });
    assert.equal(r.status, 200, r.body);
    const env = JSON.parse(r.body);
    assert.equal(env.path, '/env');
    assert.equal(env.query, 'q=1');
    assert.equal(env.server_software, 'Unit/1.35.0');
    assert.equal(env.greeting, 'hello');
    const post = await request({ host: '127.0.0.1', port, method: 'POST', path: '/flask/echo', body: 'ping body' });
    assert.equal(post.status, 200);
    assert.equal(post.body, 'ping body');
  });

  test('an unmodified Express app calling app.listen(3000) answers', async () => {
    const r = await get(port, '/express');
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'Hello from Express\n');
    assert.equal(r.headers.server, 'Unit/1.35.0');
    const body = 'x'.repeat(100_000);
    const echo = await request({ host: '127.0.0.1', port, method: 'POST', path: '/express/echo', body, headers: { 'Content-Type': 'text/plain' } });
    assert.equal(echo.status, 200);
    assert.equal(echo.body, body);
    const pid = await get(port, '/express/pid?x=1');
    assert.equal(pid.status, 200);
    assert.equal(JSON.parse(pid.body).url, '/express/pid?x=1');
    const notFound = await get(port, '/express/nothing-here');
    assert.equal(notFound.status, 404); // Express's own 404 page passes through
    assert.match(notFound.body, /Cannot GET \/express\/nothing-here/);
  });

  test('invalid changes get 400 with an error member and the old configuration keeps serving', async () => {
    const bad = await j.api('PUT', '/config', '{"listeners": {');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'Invalid JSON.');
    assert.ok(bad.json.location);

    const unknown = await j.api('PUT', '/config/settings', { http: { header_buffer_size: 4096 } });
    assert.equal(unknown.status, 400);
    assert.deepEqual(unknown.json, { error: 'Invalid configuration.', detail: 'Unknown parameter "header_buffer_size".' });

    const missing = await j.api('PUT', `/config/listeners/127.0.0.1:${port}/pass`, '"applications/shop"');
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json, { error: 'Invalid configuration.', detail: 'Request "pass" points to invalid location "applications/shop".' });

    const now = await j.api('GET', '/config');
    assert.deepEqual(now.json, config);
    assert.equal((await get(port, '/a.txt')).status, 200);
    assert.equal((await get(port, '/flask/')).body, 'Hello from Flask\n');
    assert.equal((await get(port, '/express')).body, 'Hello from Express\n');
  });
});

describe('python app that cannot start', () => {
  test('the PUT fails with 500 and the previous configuration stays', async (t) => {
    const j = await Junction.start();
    t.after(() => j.cleanup());
    const port = await freePort();
    const good = { listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } }, routes: [{ action: { return: 204 } }], applications: {} };
    await j.configure(good);
    const r = await j.api('PUT', '/config/applications', { broken: { type: 'python', module: 'no_such_module', path: FIXTURES } });
    // Not referenced by any pass: still started, and its failure fails the change (Unit §6.1).
    assert.equal(r.status, 500);
    assert.equal(r.json.error, 'Failed to apply new configuration.');
    assert.match(r.json.detail, /"broken"/);
    assert.deepEqual((await j.api('GET', '/config')).json, good);
    assert.match(j.logText(), /Python failed to import module "no_such_module"/);
    assert.equal((await get(port, '/')).status, 204);
  });
});
