import { test } from 'node:test';
import assert from 'node:assert/strict';
import { start, request, one } from './helpers.ts';

/** 1,000 steps of varied match kinds; step i answers 200 + (i % 300) with `X-Step: i`. */
function steps(n: number): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 5;
    const match: Record<string, unknown> =
      kind === 0 ? { uri: `/s${i}/*` }
        : kind === 1 ? { uri: `~^/s${i}/[a-z]+$`, method: ['GET', 'HEAD'] }
          : kind === 2 ? { uri: `/s${i}/*`, arguments: { v: `${i}*` } }
            : kind === 3 ? { uri: `/s${i}/*`, headers: { 'X-Step': ['!nope', `${i}`] } }
              : { host: [`s${i}.example`, `*.s${i}.example`], uri: '!/skip*' };
    out.push({ match, action: { return: 200 + (i % 300), response_headers: { 'X-Step': String(i) } } });
  }
  return out;
}

test('a 1,000-step route table applies and matches its first and last steps', async () => {
  const routes = steps(1000);
  const s = await start({ routes });
  try {
    const first = one(await request(s.port, 'GET', '/s0/x'));
    assert.equal(first.get('x-step'), '0');
    const regex = one(await request(s.port, 'GET', '/s1/abc'));
    assert.equal(regex.get('x-step'), '1');
    const args = one(await request(s.port, 'GET', '/s2/x?v=2a'));
    assert.equal(args.get('x-step'), '2');
    assert.equal(one(await request(s.port, 'GET', '/s3/x', ['X-Step: 3'])).get('x-step'), '3');
    const last = one(await request(s.port, 'GET', '/anything', ['Host: a.s999.example']));
    assert.equal(last.get('x-step'), '999');
    assert.equal(last.status, 200 + (999 % 300));
    assert.equal(one(await request(s.port, 'GET', '/s995/y')).get('x-step'), '995');
    assert.equal(one(await request(s.port, 'GET', '/none')).status, 404);
    // Re-applying the same table keeps serving.
    await s.router.apply({ listeners: { [s.listener]: { pass: 'routes' } }, routes });
    assert.equal(one(await request(s.port, 'GET', '/s0/x')).get('x-step'), '0');
  } finally { await s.stop(); }
});
