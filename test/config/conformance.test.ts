/**
 * The §13 conformance rows of spec/control-api.md that concern parsing, paths,
 * tree operations and validation, driven through this directory's modules in
 * the order §3.2 prescribes (parse body → resolve path → build candidate →
 * validate). Applying, persisting and the HTTP envelope belong to the
 * controller and are not exercised here.
 */
import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { parseJson } from '../../src/config/json.ts';
import { deleteAt, getAt, normalizeControlTarget, postAt, putAt, splitConfigPath } from '../../src/config/tree.ts';
import { validateConfig } from '../../src/config/validate.ts';

const B = '{"listeners":{"127.0.0.1:9080":{"pass":"routes"}},"routes":[{"match":{"method":["GET"]},"action":{"return":204}}],"applications":{}}';
const OK = { success: 'Reconfiguration done.' };

type Reply = { status: number; body: unknown };

class ConfigEndpoint {
  tree: unknown = { listeners: {}, routes: [], applications: {} };

  request(method: string, url: string, body = ''): Reply | 'closed' {
    const target = normalizeControlTarget(url);
    if (target === null) return 'closed';
    if (target !== '/config' && !target.startsWith('/config/')) throw new Error('not a /config request');
    const rest = target.slice('/config'.length);
    if (method === 'GET') {
      const tokens = splitConfigPath(rest);
      const r = tokens && getAt(this.tree, tokens);
      return r && r.ok ? { status: 200, body: r.value } : { status: 404, body: { error: "Value doesn't exist." } };
    }
    if (method !== 'PUT' && method !== 'POST' && method !== 'DELETE') {
      return { status: 405, body: { error: "Method isn't allowed." } };
    }
    let value: unknown;
    if (method !== 'DELETE') {
      const parsed = parseJson(body);
      if (!parsed.ok) return { status: 400, body: { error: 'Invalid JSON.', detail: parsed.detail, location: parsed.location } };
      value = parsed.value;
    }
    const tokens = splitConfigPath(rest);
    if (!tokens) return { status: 404, body: { error: "Value doesn't exist." } };
    const op = method === 'PUT' ? putAt(this.tree, tokens, value)
      : method === 'POST' ? postAt(this.tree, tokens, value) : deleteAt(this.tree, tokens);
    if (!op.ok) {
      return op.status === 405 ? { status: 405, body: { error: "Method isn't allowed." } }
        : { status: 404, body: { error: "Value doesn't exist." } };
    }
    const detail = validateConfig(op.tree, { modules: [], certificates: new Set() });
    if (detail) return { status: 400, body: { error: 'Invalid configuration.', detail } };
    this.tree = op.tree;
    return { status: 200, body: OK };
  }
}

describe('§13 rows through the config modules', () => {
  let api: ConfigEndpoint;
  beforeEach(() => {
    api = new ConfigEndpoint();
    assert.deepEqual(api.request('PUT', '/config', B), { status: 200, body: OK });
  });

  it('#1 fresh default tree', () => {
    assert.deepEqual(new ConfigEndpoint().request('GET', '/config'), { status: 200, body: { listeners: {}, routes: [], applications: {} } });
  });

  it('#2 PUT B, GET equals B, also with a trailing slash', () => {
    assert.deepEqual(api.request('GET', '/config'), { status: 200, body: JSON.parse(B) });
    assert.deepEqual(api.request('GET', '/config/'), { status: 200, body: JSON.parse(B) });
  });

  it('#3 a scalar', () => {
    assert.deepEqual(api.request('GET', '/config/listeners/127.0.0.1:9080/pass'), { status: 200, body: 'routes' });
  });

  it('#4 POST appends', () => {
    assert.deepEqual(api.request('POST', '/config/routes/0/match/method', '"HEAD"'), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config/routes/0/match/method'), { status: 200, body: ['GET', 'HEAD'] });
  });

  it('#5 PUT at index = length appends', () => {
    assert.deepEqual(api.request('PUT', '/config/routes/0/match/method/1', '"PUT"'), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config/routes/0/match/method'), { status: 200, body: ['GET', 'PUT'] });
  });

  it('#6 PUT beyond the length', () => {
    assert.deepEqual(api.request('PUT', '/config/routes/0/match/method/3', '"PUT"'), { status: 404, body: { error: "Value doesn't exist." } });
  });

  it('#7 DELETE bad indexes', () => {
    assert.equal((api.request('DELETE', '/config/routes/0/match/method/-1') as Reply).status, 404);
    assert.equal((api.request('DELETE', '/config/routes/0/match/method/x') as Reply).status, 404);
  });

  it('#8 POST on an object or the root', () => {
    assert.deepEqual(api.request('POST', '/config/listeners', '{}'), { status: 405, body: { error: "Method isn't allowed." } });
    assert.deepEqual(api.request('POST', '/config', '{}'), { status: 405, body: { error: "Method isn't allowed." } });
  });

  it('#9 other methods', () => {
    assert.deepEqual(api.request('PATCH', '/config/listeners'), { status: 405, body: { error: "Method isn't allowed." } });
  });

  it('#10 no auto-created parents', () => {
    assert.deepEqual(api.request('PUT', '/config/upstreams/u/servers', '{}'), { status: 404, body: { error: "Value doesn't exist." } });
  });

  it('#11–#13, #16 JSON errors', () => {
    const r11 = api.request('PUT', '/config', '') as Reply;
    assert.equal(r11.status, 400);
    assert.deepEqual((r11.body as { location: unknown }).location, { offset: 0, line: 1, column: 1 });
    const r12 = api.request('PUT', '/config', '{"listeners":{}} }') as Reply;
    assert.deepEqual((r12.body as { location: unknown }).location, { offset: 17, line: 1, column: 18 });
    const r13 = api.request('PUT', '/config', '{"listeners":{},"listeners":{}}') as Reply;
    const b13 = r13.body as { error: string; detail: string; location: { offset: number } };
    assert.equal(b13.error, 'Invalid JSON.');
    assert.ok(b13.detail.startsWith('Duplicate object member.'));
    assert.equal(b13.location.offset, 16);
    const r16 = api.request('PUT', '/config/settings', '{"http":{"idle_timeout":007}}') as Reply;
    assert.equal((r16.body as { error: string }).error, 'Invalid JSON.');
  });

  it('a bad body on a bad path reports the JSON error', () => {
    const r = api.request('PUT', '/config/nothing/here', '{') as Reply;
    assert.equal((r.body as { error: string }).error, 'Invalid JSON.');
  });

  it('#14 comments and trailing commas; #15 BOM', () => {
    const commented = B.replace('{"listeners"', '/* c */ {"listeners"').replace('"applications":{}', '"applications":{}, // x\n');
    assert.deepEqual(api.request('PUT', '/config', commented), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config'), { status: 200, body: JSON.parse(B) });
    assert.deepEqual(api.request('PUT', '/config', '\ufeff' + B), { status: 200, body: OK });
  });

  it('#17–#19 settings', () => {
    assert.deepEqual(api.request('PUT', '/config/settings', '{"http":{"idle_timeout":2.5}}'), {
      status: 400,
      body: { error: 'Invalid configuration.', detail: 'The "idle_timeout" value must be an integer number, but not a fractional number.' },
    });
    assert.deepEqual(api.request('PUT', '/config/settings', '{"http":{"idle_timeout":2.0}}'), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config/settings/http/idle_timeout'), { status: 200, body: 2 });
    assert.deepEqual(api.request('PUT', '/config/settings', '{"http":{"header_buffer_size":4096}}'), {
      status: 400, body: { error: 'Invalid configuration.', detail: 'Unknown parameter "header_buffer_size".' },
    });
  });

  it('#20–#23 listeners', () => {
    const detail = (url: string, body: string) => ((api.request('PUT', url, body) as Reply).body as { detail: string }).detail;
    assert.equal(detail('/config/listeners/127.0.0.1:9081', '{"pass":"applications/shop"}'),
      'Request "pass" points to invalid location "applications/shop".');
    assert.equal(detail('/config/listeners/127.0.0.1:9081', '{"pass":"routes/a/b/c"}'), 'Request "pass" value "routes/a/b/c" is invalid.');
    assert.equal(detail('/config/listeners/9082', '{"pass":"routes"}'), 'The listener address "9082" is invalid.');
    assert.equal(detail('/config/listeners/127.0.0.1:9083', '{"pass":"routes$nosuch"}'), 'Unknown variable "nosuch" in the "pass" value.');
  });

  it('#24 deleting what a listener needs', () => {
    assert.deepEqual(api.request('DELETE', '/config/routes'), {
      status: 400, body: { error: 'Invalid configuration.', detail: 'Request "pass" points to invalid location "routes".' },
    });
  });

  it('#25–#28 actions and applications', () => {
    const detail = (url: string, body: string) => ((api.request('PUT', url, body) as Reply).body as { detail: string }).detail;
    assert.match(detail('/config/routes/0/action', '{"return":301,"proxy":"http://127.0.0.1:1"}'), /just one of/);
    assert.equal(detail('/config/routes/0/action', '{"return":1000}'), 'The "return" value is out of allowed HTTP status code range 0-999.');
    assert.equal(detail('/config/applications/shop', '{"type":"external","executable":"/srv/shop","processes":{"spare":3}}'),
      'The "spare" number must be less than or equal to "max".');
    assert.equal(detail('/config/applications/shop', '{"executable":"/srv/shop"}'), 'Application must have the "type" property set.');
  });

  it('#29 named routes with an encoded slash', () => {
    const body = '{"listeners":{"127.0.0.1:9080":{"pass":"routes/a%2Fb"}},"routes":{"a/b":[{"action":{"return":200}}]}}';
    assert.deepEqual(api.request('PUT', '/config', body), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config/routes/a%2Fb/0/action/return'), { status: 200, body: 200 });
    assert.equal((api.request('GET', '/config/routes/a%252Fb') as Reply).status, 404);
  });

  it('#31 DELETE /config leaves {}', () => {
    assert.deepEqual(api.request('DELETE', '/config'), { status: 200, body: OK });
    assert.deepEqual(api.request('GET', '/config'), { status: 200, body: {} });
  });

  it('§4.1 invalid targets close the connection; long tokens address nothing', () => {
    assert.equal(api.request('GET', '/config/../..'), 'closed');
    assert.equal(api.request('GET', '/config/%zz'), 'closed');
    assert.equal((api.request('GET', '/config/' + 'x'.repeat(257)) as Reply).status, 404);
    assert.equal((api.request('PUT', '/config/' + 'x'.repeat(257), '{}') as Reply).status, 404);
  });
});
