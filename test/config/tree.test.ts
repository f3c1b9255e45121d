/**
 * Control API paths and tree operations (spec/control-api.md §3.2, §4).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  deleteAt, encodeConfigToken, getAt, normalizeControlTarget, postAt, putAt, splitConfigPath,
} from '../../src/config/tree.ts';

const B = () => ({
  listeners: { '127.0.0.1:9080': { pass: 'routes' } },
  routes: [{ match: { method: ['GET'] }, action: { return: 204 } }],
  applications: {},
});

/** URL (as sent) → tokens after `/config`, or null where the request is invalid or addresses nothing. */
function tokens(url: string): string[] | null {
  const target = normalizeControlTarget(url);
  assert.ok(target !== null, `target ${url} should be valid`);
  assert.ok(target === '/config' || target.startsWith('/config/'), target);
  return splitConfigPath(target.slice('/config'.length));
}

describe('normalizeControlTarget (§4.1 steps 1–2)', () => {
  const cases: Array<[string, string | null]> = [
    ['/', '/'],
    ['/config', '/config'],
    ['/config/', '/config'],
    ['//config//listeners///', '/config/listeners'],
    ['/config/./listeners/.', '/config/listeners'],
    ['/config/x/../listeners', '/config/listeners'],
    ['/config/..', '/'],
    ['/config?x=1', '/config'],
    ['/config#frag', '/config'],
    ['/config/routes/a%2Fb/0', '/config/routes/a%2Fb/0'],
    ['/config/routes/a%2fb', '/config/routes/a%2fb'],
    ['/config/routes/a%252Fb', '/config/routes/a%252Fb'],
    ['/config/listeners/%2A%3A8080', '/config/listeners/*:8080'],
    ['/config/a%3Fb%23c', '/config/a?b#c'],
    ['/config/%2E%2E', '/'],
    ['/config/caf%C3%A9', '/config/caf\u00e9'],
    ['/..', null],
    ['/config/../..', null],
    ['/config/%', null],
    ['/config/%4', null],
    ['/config/%zz', null],
    ['/config/a%00b', null],
    ['config', null],
    ['', null],
  ];
  for (const [url, expected] of cases) {
    it(`${JSON.stringify(url)} → ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeControlTarget(url), expected);
    });
  }

  it('raw bytes of the target (one char per byte, as Node gives them) are UTF-8', () => {
    assert.equal(normalizeControlTarget('/config/caf\u00c3\u00a9'), '/config/caf\u00e9');
  });
});

describe('splitConfigPath (§4.1 steps 3–4)', () => {
  it('splits and decodes once', () => {
    assert.deepEqual(tokens('/config/listeners/*:8080'), ['listeners', '*:8080']);
    assert.deepEqual(tokens('/config/listeners/unix:%2Fvar%2Frun%2Fapp.sock/pass'), ['listeners', 'unix:/var/run/app.sock', 'pass']);
    assert.deepEqual(tokens('/config/routes/a%2Fb/0'), ['routes', 'a/b', '0']);
    assert.deepEqual(tokens('/config/routes/a%252Fb'), ['routes', 'a%2Fb']);
    assert.deepEqual(tokens('/config/'), []);
    assert.deepEqual(splitConfigPath(''), []);
    assert.deepEqual(splitConfigPath('listeners/x'), ['listeners', 'x']);
  });

  it('a token over 256 bytes addresses nothing', () => {
    assert.deepEqual(splitConfigPath('/' + 'a'.repeat(256)), ['a'.repeat(256)]);
    assert.equal(splitConfigPath('/' + 'a'.repeat(257)), null);
    assert.equal(splitConfigPath('/x/' + '\u00e9'.repeat(129)), null);
  });

  it('encodeConfigToken round-trips through the path functions', () => {
    for (const key of ['unix:/var/run/a.sock', '50%', 'a?b#c', 'caf\u00e9', '*:80']) {
      assert.deepEqual(tokens('/config/x/' + encodeConfigToken(key)), ['x', key]);
    }
  });
});

describe('getAt', () => {
  const tree = B();
  it('#3 returns scalars and containers', () => {
    assert.deepEqual(getAt(tree, ['listeners', '127.0.0.1:9080', 'pass']), { ok: true, value: 'routes' });
    assert.deepEqual(getAt(tree, []), { ok: true, value: tree });
    assert.deepEqual(getAt(tree, ['routes', '0', 'action', 'return']), { ok: true, value: 204 });
  });
  it('array indexes: digits only, leading zeros tolerated', () => {
    assert.equal((getAt(tree, ['routes', '00']) as { ok: boolean }).ok, true);
    for (const bad of ['-1', 'x', '+0', ' 0', '1', '99999999999999999999']) {
      assert.deepEqual(getAt(tree, ['routes', bad]), { ok: false, status: 404 });
    }
  });
  it('object members are exact and case-sensitive; scalars have no children', () => {
    assert.deepEqual(getAt(tree, ['Listeners']), { ok: false, status: 404 });
    assert.deepEqual(getAt(tree, ['listeners', '127.0.0.1:9080', 'pass', 'x']), { ok: false, status: 404 });
    assert.deepEqual(getAt(tree, ['toString']), { ok: false, status: 404 });
  });
});

describe('putAt', () => {
  it('root replaces the tree', () => {
    assert.deepEqual(putAt(B(), [], { x: 1 }), { ok: true, tree: { x: 1 } });
  });

  it('#5 index equal to the length appends; replacement keeps others', () => {
    const r = putAt(B(), ['routes', '0', 'match', 'method', '1'], 'PUT');
    assert.ok(r.ok);
    assert.deepEqual(getAt(r.tree, ['routes', '0', 'match', 'method']), { ok: true, value: ['GET', 'PUT'] });
    const r2 = putAt(r.tree, ['routes', '0', 'match', 'method', '0'], 'POST');
    assert.ok(r2.ok);
    assert.deepEqual(getAt(r2.tree, ['routes', '0', 'match', 'method']), { ok: true, value: ['POST', 'PUT'] });
  });

  it('#6 index beyond the length → 404', () => {
    assert.deepEqual(putAt(B(), ['routes', '0', 'match', 'method', '3'], 'PUT'), { ok: false, status: 404 });
    assert.deepEqual(putAt(B(), ['routes', 'x'], {}), { ok: false, status: 404 });
  });

  it('#10 no auto-created intermediates', () => {
    assert.deepEqual(putAt(B(), ['upstreams', 'u', 'servers'], {}), { ok: false, status: 404 });
  });

  it('new members are appended at the end, replaced members keep their place', () => {
    const r = putAt(B(), ['settings'], { http: {} });
    assert.ok(r.ok);
    assert.deepEqual(Object.keys(r.tree as object), ['listeners', 'routes', 'applications', 'settings']);
    const r2 = putAt(r.tree, ['listeners'], {});
    assert.ok(r2.ok);
    assert.deepEqual(Object.keys(r2.tree as object), ['listeners', 'routes', 'applications', 'settings']);
  });

  it('below a scalar → 404 (§12 item 1)', () => {
    assert.deepEqual(putAt(B(), ['listeners', '127.0.0.1:9080', 'pass', 'x'], 1), { ok: false, status: 404 });
  });

  it('a member named __proto__ is stored as data', () => {
    const r = putAt({}, ['__proto__'], { polluted: true });
    assert.ok(r.ok);
    assert.deepEqual(Object.keys(r.tree as object), ['__proto__']);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(r.tree), Object.prototype);
  });

  it('never mutates its input and shares untouched branches', () => {
    const tree = B();
    const before = structuredClone(tree);
    const r = putAt(tree, ['listeners', '127.0.0.1:9080', 'pass'], 'applications/x');
    assert.ok(r.ok);
    assert.deepEqual(tree, before);
    assert.equal((r.tree as ReturnType<typeof B>).routes, tree.routes);
    assert.notEqual((r.tree as ReturnType<typeof B>).listeners, tree.listeners);
  });
});

describe('postAt', () => {
  it('#4 appends to an array', () => {
    const r = postAt(B(), ['routes', '0', 'match', 'method'], 'HEAD');
    assert.ok(r.ok);
    assert.deepEqual(getAt(r.tree, ['routes', '0', 'match', 'method']), { ok: true, value: ['GET', 'HEAD'] });
  });
  it('an array body becomes one element', () => {
    const r = postAt(B(), ['routes', '0', 'match', 'method'], ['A', 'B']);
    assert.ok(r.ok);
    assert.deepEqual(getAt(r.tree, ['routes', '0', 'match', 'method']), { ok: true, value: ['GET', ['A', 'B']] });
  });
  it('#8 root and non-arrays → 405; missing → 404', () => {
    assert.deepEqual(postAt(B(), [], {}), { ok: false, status: 405 });
    assert.deepEqual(postAt(B(), ['listeners'], {}), { ok: false, status: 405 });
    assert.deepEqual(postAt(B(), ['nothing'], {}), { ok: false, status: 404 });
    assert.deepEqual(postAt(B(), ['routes', '5'], {}), { ok: false, status: 404 });
  });
  it('does not mutate its input', () => {
    const tree = B();
    postAt(tree, ['routes'], {});
    assert.deepEqual(tree, B());
  });
});

describe('deleteAt', () => {
  it('#31 root → {}', () => {
    assert.deepEqual(deleteAt(B(), []), { ok: true, tree: {} });
  });
  it('removes members and shifts elements', () => {
    const r = deleteAt({ a: [1, 2, 3], b: 1 }, ['a', '1']);
    assert.deepEqual(r, { ok: true, tree: { a: [1, 3], b: 1 } });
    const r2 = deleteAt({ a: [1], b: 1 }, ['b']);
    assert.deepEqual(r2, { ok: true, tree: { a: [1] } });
    assert.deepEqual(deleteAt({ a: [1] }, ['a', '0']), { ok: true, tree: { a: [] } });
  });
  it('#7 missing targets → 404', () => {
    assert.deepEqual(deleteAt(B(), ['routes', '0', 'match', 'method', '-1']), { ok: false, status: 404 });
    assert.deepEqual(deleteAt(B(), ['routes', '0', 'match', 'method', 'x']), { ok: false, status: 404 });
    assert.deepEqual(deleteAt(B(), ['nothing']), { ok: false, status: 404 });
  });
  it('does not mutate its input', () => {
    const tree = B();
    deleteAt(tree, ['routes', '0']);
    assert.deepEqual(tree, B());
  });
});
