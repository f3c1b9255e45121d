/**
 * `/js_modules` and JavaScript templates as a Unit client sees them
 * (spec/control-api.md §10, router.md §6.3), against the real daemon.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Junction, freePort, get } from './harness.ts';

const HTTP_JS = `var http = {};

http.route = function (headers) {
    var authorization = headers['Authorization'];
    if (authorization) {
        var user = atob(authorization.split(' ')[1]);
        return String(user) == 'user:password' ? 'accept' : 'forbidden';
    }
    return 'unauthorized';
};

export default http;
`;

describe('/js_modules', () => {
  let j: Junction;
  let port: number;
  const config = () => ({
    listeners: { [`127.0.0.1:${port}`]: { pass: '`routes/${http.route(headers)}`' } },
    routes: {
      accept: [{ action: { return: 204 } }],
      forbidden: [{ action: { return: 403 } }],
      unauthorized: [{ action: { return: 401 } }],
    },
    settings: { js_module: 'http' },
  });

  before(async () => {
    j = await Junction.start();
    port = await freePort();
  });
  after(async () => { await j.cleanup(); });

  test('upload, read, compile errors and names', async () => {
    const up = await j.api('PUT', '/js_modules/http', HTTP_JS);
    assert.equal(up.status, 200);
    assert.deepEqual(up.json, { success: 'JS module uploaded.' });
    const file = path.join(j.statedir, 'scripts', 'http');
    assert.equal(fs.readFileSync(file, 'utf8'), HTTP_JS);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual((await j.api('PUT', '/js_modules/http', HTTP_JS)).json, { error: 'JS module already exists.' });

    const bad = await j.api('PUT', '/js_modules/broken', 'var a = {;\nexport default a;\n');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'Invalid JS module.');
    assert.match(bad.json.detail, /^SyntaxError: .* in broken:1$/);
    assert.equal(fs.existsSync(path.join(j.statedir, 'scripts', 'broken')), false);
    const named = await j.api('PUT', '/js_modules/named', 'export const x = 1;\n');
    assert.equal(named.json.error, 'Invalid JS module.');
    assert.match(named.json.detail, /Non-default export is not supported/);

    assert.deepEqual((await j.api('GET', '/js_modules')).json, { http: HTTP_JS });
    const one = await j.api('GET', '/js_modules/http');
    assert.equal(one.status, 200);
    assert.equal(one.json, HTTP_JS);
    assert.deepEqual((await j.api('GET', '/js_modules/http/x')).json, { error: 'Invalid path.' });
    const missing = await j.api('GET', '/js_modules/nope');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: "JS module doesn't exist." });
    assert.deepEqual((await j.api('DELETE', '/js_modules')).json, { error: 'Invalid JS module name.' });
    assert.deepEqual((await j.api('PUT', '/js_modules/a/b', 'export default 1')).json, { error: 'Invalid JS module name.' });
    const post = await j.api('POST', '/js_modules/http', HTTP_JS);
    assert.equal(post.status, 405);
    assert.deepEqual(post.json, { error: 'Invalid method.' });

    const root = await j.api('GET', '/');
    assert.deepEqual(Object.keys(root.json), ['certificates', 'js_modules', 'config', 'status']);
    assert.deepEqual(root.json.js_modules, { http: HTTP_JS });
  });

  test('settings.js_module is validated and the module serves requests; in-use modules stay', async () => {
    const bad = await j.api('PUT', '/config', { ...config(), settings: { js_module: ['http', 'nope'] } });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: 'Invalid configuration.', detail: 'JS module "nope" is not found.' });

    await j.configure(config());
    assert.equal((await get(port, '/')).status, 401);
    assert.equal((await get(port, '/', { Authorization: `Basic ${Buffer.from('user:password').toString('base64')}` })).status, 204);
    assert.equal((await get(port, '/', { Authorization: `Basic ${Buffer.from('user:nope').toString('base64')}` })).status, 403);

    const used = await j.api('DELETE', '/js_modules/http');
    assert.equal(used.status, 400);
    assert.deepEqual(used.json, { error: 'JS module is used in the configuration.' });
  });

  test('modules survive a restart; deleting an unused module', async () => {
    await j.stop();
    await j.run();
    assert.deepEqual((await j.api('GET', '/js_modules')).json, { http: HTTP_JS });
    assert.equal((await get(port, '/')).status, 401);

    await j.configure({ listeners: {}, routes: [], applications: {} });
    const del = await j.api('DELETE', '/js_modules/http');
    assert.equal(del.status, 200);
    assert.deepEqual(del.json, { success: 'JS module deleted.' });
    assert.equal(fs.existsSync(path.join(j.statedir, 'scripts', 'http')), false);
    assert.deepEqual((await j.api('DELETE', '/js_modules/http')).json, { error: "JS module doesn't exist." });
    assert.deepEqual((await j.api('GET', '/js_modules')).json, {});
  });
});
