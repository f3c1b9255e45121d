/**
 * The control API as a Unit client sees it (spec/control-api.md §13), against
 * the real daemon over its Unix control socket.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Junction, freePort, get, request } from './harness.ts';

describe('control API', () => {
  let j: Junction;
  let port: number;
  let B: Record<string, unknown>;
  const ok = { success: 'Reconfiguration done.' };

  before(async () => {
    j = await Junction.start();
    port = await freePort();
    B = {
      listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
      routes: [{ match: { method: ['GET'] }, action: { return: 204 } }],
      applications: {},
    };
  });
  after(async () => { await j.cleanup(); });

  test('#1 a fresh state answers the default configuration', async () => {
    const r = await j.api('GET', '/config');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { listeners: {}, routes: [], applications: {} });
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers.connection, 'close');
    assert.equal(r.headers.server, 'Unit/1.35.0');
  });

  describe('from state B', () => {
    beforeEach(async () => {
      const r = await j.api('PUT', '/config', B);
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(r.json, ok);
    });

    test('#2 #3 GET returns what was put, at any path', async () => {
      assert.deepEqual((await j.api('GET', '/config')).json, B);
      assert.deepEqual((await j.api('GET', '/config/')).json, B);
      const pass = await j.api('GET', `/config/listeners/127.0.0.1:${port}/pass`);
      assert.equal(pass.status, 200);
      assert.equal(pass.json, 'routes');
      assert.equal((await get(port, '/')).status, 204);
    });

    test('#4 #5 #6 POST appends; PUT at index = length appends; beyond → 404', async () => {
      assert.deepEqual((await j.api('POST', '/config/routes/0/match/method', '"HEAD"')).json, ok);
      assert.deepEqual((await j.api('GET', '/config/routes/0/match/method')).json, ['GET', 'HEAD']);
      await j.api('PUT', '/config', B);
      assert.deepEqual((await j.api('PUT', '/config/routes/0/match/method/1', '"PUT"')).json, ok);
      assert.deepEqual((await j.api('GET', '/config/routes/0/match/method')).json, ['GET', 'PUT']);
      const r = await j.api('PUT', '/config/routes/0/match/method/3', '"PUT"');
      assert.equal(r.status, 404);
      assert.deepEqual(r.json, { error: "Value doesn't exist." });
    });

    test('#7 #8 #9 #10 bad indices, POST to an object or root, other methods, no auto-created parents', async () => {
      for (const p of ['/config/routes/0/match/method/-1', '/config/routes/0/match/method/x']) {
        const r = await j.api('DELETE', p);
        assert.equal(r.status, 404);
        assert.deepEqual(r.json, { error: "Value doesn't exist." });
      }
      for (const p of ['/config/listeners', '/config']) {
        const r = await j.api('POST', p, {});
        assert.equal(r.status, 405);
        assert.deepEqual(r.json, { error: "Method isn't allowed." });
      }
      const patch = await j.api('PATCH', '/config/listeners', {});
      assert.equal(patch.status, 405);
      assert.deepEqual(patch.json, { error: "Method isn't allowed." });
      const u = await j.api('PUT', '/config/upstreams/u/servers', {});
      assert.equal(u.status, 404);
    });

    test('#11 #12 #13 #16 JSON errors with location', async () => {
      const empty = await j.api('PUT', '/config', '');
      assert.equal(empty.status, 400);
      assert.equal(empty.json.error, 'Invalid JSON.');
      assert.deepEqual(empty.json.location, { offset: 0, line: 1, column: 1 });
      const extra = await j.api('PUT', '/config', '{"listeners":{}} }');
      assert.equal(extra.json.error, 'Invalid JSON.');
      assert.deepEqual(extra.json.location, { offset: 17, line: 1, column: 18 });
      const dup = await j.api('PUT', '/config', '{"listeners":{},"listeners":{}}');
      assert.match(dup.json.detail, /^Duplicate object member\./);
      assert.equal(dup.json.location.offset, 16);
      const zeros = await j.api('PUT', '/config/settings', '{"http":{"idle_timeout":007}}');
      assert.equal(zeros.status, 400);
      assert.equal(zeros.json.error, 'Invalid JSON.');
      assert.deepEqual((await j.api('GET', '/config')).json, B);
    });

    test('#14 #15 comments, trailing commas and a BOM are accepted', async () => {
      const text = `// a comment\n{"listeners":{"127.0.0.1:${port}":{"pass":"routes",},}, /* block */ "routes":[{"match":{"method":["GET",]},"action":{"return":204}}],"applications":{},}\n`;
      assert.deepEqual((await j.api('PUT', '/config', text)).json, ok);
      assert.deepEqual((await j.api('GET', '/config')).json, B);
      const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(B))]);
      assert.deepEqual((await j.api('PUT', '/config', bom)).json, ok);
    });

    test('#17 #18 #19 integer checks and unknown settings', async () => {
      const frac = await j.api('PUT', '/config/settings', '{"http":{"idle_timeout":2.5}}');
      assert.deepEqual(frac.json, { error: 'Invalid configuration.', detail: 'The "idle_timeout" value must be an integer number, but not a fractional number.' });
      assert.deepEqual((await j.api('PUT', '/config/settings', '{"http":{"idle_timeout":2.0}}')).json, ok);
      assert.equal((await j.api('GET', '/config/settings/http/idle_timeout')).json, 2);
      const unknown = await j.api('PUT', '/config/settings', '{"http":{"header_buffer_size":4096}}');
      assert.deepEqual(unknown.json, { error: 'Invalid configuration.', detail: 'Unknown parameter "header_buffer_size".' });
    });

    test('#20 – #23 pass targets, listener names and variables', async () => {
      const cases: Array<[string, unknown, string]> = [
        ['/config/listeners/127.0.0.1:9081', { pass: 'applications/shop' }, 'Request "pass" points to invalid location "applications/shop".'],
        ['/config/listeners/127.0.0.1:9081', { pass: 'routes/a/b/c' }, 'Request "pass" value "routes/a/b/c" is invalid.'],
        ['/config/listeners/9082', { pass: 'routes' }, 'The listener address "9082" is invalid.'],
        ['/config/listeners/127.0.0.1:9083', { pass: 'routes$nosuch' }, 'Unknown variable "nosuch" in the "pass" value.'],
      ];
      for (const [p, body, detail] of cases) {
        const r = await j.api('PUT', p, body);
        assert.equal(r.status, 400, p);
        assert.deepEqual(r.json, { error: 'Invalid configuration.', detail });
      }
    });

    test('#24 – #28 references, action exclusivity, ranges and application checks', async () => {
      const del = await j.api('DELETE', '/config/routes');
      assert.deepEqual(del.json, { error: 'Invalid configuration.', detail: 'Request "pass" points to invalid location "routes".' });
      const both = await j.api('PUT', '/config/routes/0/action', { return: 301, proxy: 'http://127.0.0.1:1' });
      assert.equal(both.status, 400);
      assert.match(both.json.detail, /just one of/);
      const big = await j.api('PUT', '/config/routes/0/action', { return: 1000 });
      assert.equal(big.json.detail, 'The "return" value is out of allowed HTTP status code range 0-999.');
      const spare = await j.api('PUT', '/config/applications/shop', { type: 'external', executable: '/srv/shop', processes: { spare: 3 } });
      assert.equal(spare.json.detail, 'The "spare" number must be less than or equal to "max".');
      const notype = await j.api('PUT', '/config/applications/shop', { executable: '/srv/shop' });
      assert.equal(notype.json.detail, 'Application must have the "type" property set.');
      assert.deepEqual((await j.api('GET', '/config')).json, B);
    });

    test('#29 encoded slashes in named routes', async () => {
      const conf = { listeners: { [`127.0.0.1:${port}`]: { pass: 'routes/a%2Fb' } }, routes: { 'a/b': [{ action: { return: 200 } }] } };
      assert.deepEqual((await j.api('PUT', '/config', conf)).json, ok);
      const r = await j.api('GET', '/config/routes/a%2Fb/0/action/return');
      assert.equal(r.status, 200);
      assert.equal(r.json, 200);
      assert.equal((await j.api('GET', '/config/routes/a%252Fb')).status, 404);
      assert.equal((await get(port, '/')).status, 200);
    });

    test('#30 a listener that cannot bind: 500 and the configuration stays', async () => {
      const busy = await freePort();
      const blocker = net.createServer();
      await new Promise<void>((r) => blocker.listen(busy, '127.0.0.1', r));
      try {
        const r = await j.api('PUT', `/config/listeners/127.0.0.1:${busy}`, { pass: 'routes' });
        assert.equal(r.status, 500);
        assert.equal(r.json.error, 'Failed to apply new configuration.');
      assert.match(r.json.detail, /^bind\("127\.0\.0\.1:\d+"\) failed \(98: Address already in use\)$/);
        assert.deepEqual((await j.api('GET', '/config')).json, B);
        assert.equal((await get(port, '/')).status, 204);
        assert.match(j.logText(), new RegExp(`\\[alert\\] \\d+#\\d+ bind\\("127\\.0\\.0\\.1:${busy}"\\) failed \\(98: Address already in use\\)`));
      } finally {
        blocker.close();
      }
    });

    test('#31 DELETE /config leaves {} in memory and on disk', async () => {
      assert.deepEqual((await j.api('DELETE', '/config')).json, ok);
      assert.deepEqual((await j.api('GET', '/config')).json, {});
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(j.statedir, 'conf.json'), 'utf8')), {});
      await assert.rejects(get(port, '/'));
    });

    test('#33 #34 /status counters and errors', async () => {
      const before = (await j.api('GET', '/status')).json;
      assert.deepEqual(Object.keys(before).sort(), ['applications', 'connections', 'modules', 'requests']);
      await get(port, '/');
      const s = (await j.api('GET', '/status')).json;
      assert.equal(s.requests.total, before.requests.total + 1);
      const c = s.connections;
      assert.equal(c.active, c.accepted - c.closed - c.idle);
      assert.equal((await j.api('GET', '/status/requests/total')).json, s.requests.total);
      const del = await j.api('DELETE', '/status');
      assert.equal(del.status, 405);
      assert.deepEqual(del.json, { error: 'Invalid method.' });
      const nope = await j.api('GET', '/status/nope');
      assert.equal(nope.status, 404);
      assert.deepEqual(nope.json, { error: 'Invalid path.' });
    });

    test('#35 restart of an unknown application', async () => {
      const r = await j.api('GET', '/control/applications/nope/restart');
      assert.equal(r.status, 404);
      assert.deepEqual(r.json, { error: "Value doesn't exist." });
      const d = await j.api('DELETE', '/control/applications/nope/restart');
      assert.equal(d.status, 405);
      assert.deepEqual(d.json, { error: "Method isn't allowed." });
    });

    test('#42 #43 unknown endpoints, root, and the response envelope', async () => {
      const r = await j.api('GET', '/nowhere');
      assert.equal(r.status, 404);
      assert.deepEqual(r.json, { error: "Value doesn't exist." });
      const p = await j.api('POST', '/', {});
      assert.equal(p.status, 405);
      assert.deepEqual(p.json, { error: 'Invalid method.' });
      const root = await j.api('GET', '/');
      assert.equal(root.status, 200);
      assert.deepEqual(root.json.config, B);
      assert.ok(root.json.status.connections);
      assert.equal((await j.api('GET', '/configx')).status, 404);
      assert.equal((await j.api('GET', '/control')).status, 404);
    });

    test('output is formatted as Unit prints it', async () => {
      const r = await j.api('GET', '/config/routes/0');
      assert.equal(r.body, '{\r\n\t"match": {\r\n\t\t"method": [\r\n\t\t\t"GET"\r\n\t\t]\r\n\t},\r\n\r\n\t"action": {\r\n\t\t"return": 204\r\n\t}\r\n}\r\n');
    });
  });

  test('one request per connection: the server closes after answering', async () => {
    const sock = net.connect(j.control);
    let data = '';
    sock.on('data', (c) => { data += c; });
    await new Promise<void>((resolve) => {
      sock.on('close', () => resolve());
      sock.write('GET /config HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    assert.match(data, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(data, /\r\nConnection: close\r\n/);
  });

  test('many /status requests and applies leave no listeners behind in main (no MaxListenersExceededWarning)', async () => {
    for (let i = 0; i < 30; i++) assert.equal((await j.api('GET', '/status')).status, 200);
    for (let i = 0; i < 12; i++) {
      assert.equal((await j.api('PUT', '/config/settings', { http: { idle_timeout: 30 + i } })).status, 200);
    }
    assert.doesNotMatch(j.stderr, /MaxListenersExceeded/);
  });

  test('#32 restart restores the configuration; version file written', async () => {
    const r = await request({ socketPath: j.control, method: 'PUT', path: '/config', body: JSON.stringify(B) });
    assert.equal(r.status, 200);
    await j.stop('SIGTERM');
    await j.run();
    assert.deepEqual((await j.api('GET', '/config')).json, B);
    assert.equal(fs.readFileSync(path.join(j.statedir, 'version'), 'utf8'), '13500');
    const s = (await j.api('GET', '/status')).json;
    assert.equal(s.requests.total, 0);
  });
});
