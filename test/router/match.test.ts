import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { start, request, one, tmpdir, waitLines } from './helpers.ts';

/** Start a router with one matching step (→ 200) and run `checks` of [target, headers, expected status]. */
async function matches(match: Record<string, unknown>, checks: Array<[string, string[], number]>, extra: Record<string, unknown> = {}): Promise<void> {
  const s = await start({ routes: [{ match, action: { return: 200 } }], ...extra });
  try {
    for (const [target, headers, status] of checks) {
      assert.equal(one(await request(s.port, 'GET', target, headers)).status, status, `${JSON.stringify(match)} ${target} ${headers.join('|')}`);
    }
  } finally { await s.stop(); }
}

test('§14.19 arguments', () => matches({ arguments: { foo: 'bar' } }, [
  ['/?foo=bar', [], 200], ['/?foo=bar&foo=baz', [], 404], ['/?Foo=bar', [], 404], ['/?foo=b%61r', [], 200],
]));

test('§14.20 arguments "!" needs the argument present and non-empty', () => matches({ arguments: { foo: '!' } }, [
  ['/?x=1', [], 404], ['/?foo=', [], 404], ['/?foo=1', [], 200],
]));

test('arguments: encoded names and wildcards, array of objects (OR)', () => matches(
  { arguments: [{ 'a b': 'x*' }, { c: ['1', '2'] }] },
  [['/?a+b=xyz', [], 200], ['/?a%20b=yz', [], 404], ['/?c=2', [], 200], ['/?c=3', [], 404], ['/?', [], 404]],
));

test('§14.21 query', async () => {
  await matches({ query: 'a=b c' }, [['/?a=b+c', [], 200], ['/?a=b%20c', [], 200], ['/?a=bc', [], 404]]);
  await matches({ query: '!' }, [['/?', [], 404], ['/?x', [], 200], ['/', [], 404]]);
});

test('§14.22 headers', () => matches({ headers: [{ 'X-A': '1' }, { 'X-B': '2*' }] }, [
  ['/', ['X-B: 2x'], 200], ['/', ['x-a: 1'], 200], ['/', [], 404], ['/', ['X-A: 1', 'X-A: 2'], 404],
]));

test('headers: values compared case-insensitively', () => matches({ headers: { Accept: '*TEXT/html*' } }, [
  ['/', ['Accept: text/HTML,*/*'], 200], ['/', ['Accept: image/png'], 404],
]));

test('§14.23 cookies', () => matches({ cookies: { s: 'v*' } }, [
  ['/', ['Cookie: a=1; s=value'], 200], ['/', ['Cookie: S=value'], 404], ['/', ['Cookie: a=1', 'Cookie: s=v2'], 200],
]));

test('§14.24 source', async () => {
  await matches({ source: ['!127.0.0.1', '127.0.0.0/8'] }, [['/', [], 404]]);
  await matches({ source: [] }, [['/', [], 404]]);
  await matches({ source: '127.0.0.0/8' }, [['/', [], 200]]);
  await matches({ destination: '127.0.0.1' }, [['/', [], 200]]);
  await matches({ destination: '!*:1-1000' }, [['/', [], 200]]);
});

test('§14.25 if', async () => {
  await matches({ if: '$arg_debug' }, [['/?debug=0', [], 404], ['/?debug=', [], 404], ['/?debug=yes', [], 200], ['/?debug=false', [], 404]]);
  await matches({ if: '!$arg_debug' }, [['/?debug=0', [], 200], ['/?debug=yes', [], 404]]);
  await matches({ if: '`${args.debug === "1" ? "y" : ""}`' }, [['/?debug=1', [], 200], ['/?debug=2', [], 404]]);
});

test('§14.26 regex uri', () => matches({ uri: '~^/v[0-9]+/' }, [
  ['/v12/x', [], 200], ['/V1/', [], 404], ['/av1/', [], 404],
]));

test('uri wildcards, negation, arrays, %2A literal', async () => {
  await matches({ uri: ['/a*', '!/ab*'] }, [['/a', [], 200], ['/ax', [], 200], ['/abc', [], 404], ['/b', [], 404]]);
  await matches({ uri: '*/mid/*.php' }, [['/x/mid/y.php', [], 200], ['/mid/y.php', [], 200], ['/x/mid.php', [], 404], ['/x/mid/y.phps', [], 404]]);
  await matches({ uri: '/star%2A' }, [['/star*', [], 200], ['/starx', [], 404]]);
  await matches({ uri: '!' }, [['/', [], 200]]);
  await matches({ method: ['GET', 'HEAD'], host: ['*.example.com', 'example.com'] },
    [['/', ['Host: a.example.com'], 200], ['/', ['Host: example.com'], 200], ['/', ['Host: example.org'], 404]]);
});

test('§14.40 scheme from forwarded protocol', () => matches({ scheme: 'https' }, [
  ['/', ['X-Forwarded-Proto: HTTPS'], 200], ['/', ['X-Forwarded-Proto: on'], 200], ['/', ['X-Forwarded-Proto: http, https'], 404],
  ['/', [], 404],
], { listeners: { '*:8080': { pass: 'routes', forwarded: { protocol: 'X-Forwarded-Proto', source: '127.0.0.1' } } } }));

test('§14.44 unsafe fields are discarded unless configured', async () => {
  await matches({ headers: { X_Custom: '1' } }, [['/', ['X_Custom: 1'], 404]]);
  await matches({ headers: { X_Custom: '1' } }, [['/', ['X_Custom: 1'], 200]], { settings: { http: { discard_unsafe_fields: false } } });
  const s = await start({ routes: [{ action: { return: 302, location: 'v=$header_x_custom' } }], settings: { http: { discard_unsafe_fields: false } } });
  try {
    assert.equal(one(await request(s.port, 'GET', '/', ['X_Custom: 1'])).get('location'), 'v=');
    assert.equal(one(await request(s.port, 'GET', '/', ['X-Custom: 2'])).get('location'), 'v=2');
  } finally { await s.stop(); }
});

test('§14.39 forwarded client_ip', async () => {
  const dir = tmpdir();
  const run = async (forwarded: Record<string, unknown>, xff: string[]): Promise<string> => {
    const log = path.join(dir, `${Math.random()}.log`);
    const s = await start({ routes: [{ action: { return: 200 } }], access_log: { path: log, format: '$remote_addr' },
      listeners: { '*:8080': { pass: 'routes', forwarded } } });
    try {
      await request(s.port, 'GET', '/', xff.map((v) => `X-Forwarded-For: ${v}`));
      return (await waitLines(log, 1))[0];
    } finally { await s.stop(); }
  };
  try {
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: '127.0.0.1' }, ['1.1.1.1, 2.2.2.2']), '2.2.2.2');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: ['127.0.0.1', '2.2.2.2'], recursive: true }, ['1.1.1.1, 2.2.2.2']), '1.1.1.1');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: '127.0.0.1' }, ['blah']), '127.0.0.1');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: '10.0.0.1' }, ['1.1.1.1']), '127.0.0.1');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: '127.0.0.1' }, ['1.1.1.1', '[::1]:80']), '::1');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: ['127.0.0.1', '2.2.2.2', '3.3.3.3'], recursive: true },
      ['1.1.1.1 2.2.2.2', '3.3.3.3']), '1.1.1.1');
    assert.equal(await run({ client_ip: 'X-Forwarded-For', source: ['127.0.0.1', '2.2.2.2'], recursive: true }, ['bad, 2.2.2.2']), '2.2.2.2');
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('variables in templates: §6.2', async () => {
  const s = await start({ routes: [{ action: { return: 200, response_headers: {
    'X-V': '${method}|${request_uri}|${uri}|${host}|${arg_a}|${cookie_c}|${header_user_agent}|${request_line}|${dollar}|$arg_zz|',
    'X-Id': '$request_id', 'X-T': '$request_time', 'X-L': '$time_local', 'X-R': '$remote_addr' } } }] });
  try {
    const r = one(await request(s.port, 'GET', '/x/../y%20z?a=1&a=2', ['Host: H.example:1', 'Cookie: c=3; c=4', 'User-Agent: u1', 'User-Agent: u2']));
    assert.equal(r.get('x-v'), 'GET|/x/../y%20z?a=1&a=2|/y z|h.example|2|3|u2|GET /x/../y%20z?a=1&a=2 HTTP/1.1|$||');
    assert.match(r.get('x-id')!, /^[0-9a-f]{32}$/);
    assert.match(r.get('x-t')!, /^\d+\.\d{3}$/);
    assert.match(r.get('x-l')!, /^\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}$/);
    assert.equal(r.get('x-r'), '127.0.0.1');
  } finally { await s.stop(); }
});
