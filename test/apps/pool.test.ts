/**
 * The process pool through AppManager with the real spawn function as its
 * AppHost: start rules, replacement, recycling, timeouts, failures,
 * generations, restart, shutdown (spec/applications.md §2.3–§2.7, §6, §9).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FIXTURES, harness, request, waitFor, alive, type Harness } from './helpers.ts';

const PY = join(FIXTURES, 'python');
const echo = (extra: Record<string, unknown> = {}) => ({ type: 'python', path: PY, module: 'wsgi_echo', ...extra });

function pids(h: Harness): number[] {
  return [...h.host.children.keys()].sort((a, b) => a - b);
}

async function pidOf(h: Harness, path = '/pid'): Promise<number> {
  const r = await request(`${h.front.url}${path}`);
  assert.equal(r.status, 200, r.text);
  return Number(r.text);
}

async function withHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await harness();
  try { await fn(h); } finally { await h.close(); }
}

test('processes: N starts N before prepare() resolves; a killed one is replaced (§9 check 14)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ processes: 3 }) });
  assert.deepEqual(h.manager.status().app, { processes: { running: 3, starting: 0, idle: 3 }, requests: { active: 0 } });
  const before = pids(h);
  assert.equal(before.length, 3);
  process.kill(before[1], 'SIGKILL');
  await waitFor(() => pids(h).length === 3 && !pids(h).includes(before[1]) && h.manager.status().app.processes.running === 3, 10_000, 'replacement');
  assert.match(h.rec.text(), new RegExp(`app process ${before[1]} exited on signal SIGKILL`));
  assert.ok(before.filter((p) => p !== before[1]).every((p) => pids(h).includes(p)), 'the others kept running');
  assert.ok(await pidOf(h) > 0);
}));

test('limits.requests recycles a process after N requests (§9 check 20)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ processes: 1, limits: { requests: 2 } }) });
  const a = await pidOf(h);
  const b = await pidOf(h);
  const c = await pidOf(h);
  assert.equal(a, b);
  assert.notEqual(c, a);
  await waitFor(() => !alive(a), 10_000, 'the recycled process exits');
  assert.match(h.rec.text(), new RegExp(`app process ${a} exited with code 0`));
}));

test('a process dying mid-request gives 503; the next request is served by a replacement', () => withHarness(async (h) => {
  await h.apply({ app: echo() });
  const first = await pidOf(h);
  const r = await request(`${h.front.url}/exit`);
  assert.equal(r.status, 503);
  await waitFor(async () => (await pidOf(h)) !== first, 10_000, 'a new process');
  assert.match(h.rec.text(), new RegExp(`app process ${first} exited with code 3`));
}));

test('limits.timeout: 503 when the app is silent too long; the process is kept (§9 check 19)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ limits: { timeout: 1 } }) });
  const first = await pidOf(h);
  const r = await request(`${h.front.url}/sleep?1.6`);
  assert.equal(r.status, 503);
  assert.equal(await pidOf(h), first);
}));

test('an import failure with pre-started processes rejects prepare(); the old set keeps serving (§9 check 13)', () => withHarness(async (h) => {
  await h.apply({ app: echo() });
  const first = await pidOf(h);
  await assert.rejects(h.manager.prepare({ app: { type: 'python', path: PY, module: 'no_such_module' } }), { message: 'failed to start application "app"' });
  const log = h.rec.text();
  assert.match(log, /\[alert\] \d+#\d+ \[unit\] Python failed to import module "no_such_module"/);
  assert.match(log, /ModuleNotFoundError/);
  assert.match(log, /\[alert\] \d+#\d+ "app" application failed to start/);
  assert.match(log, /\[warn\] \d+#\d+ failed to start application "app"/);
  assert.equal(await pidOf(h), first);
  assert.deepEqual(pids(h), [first]);
}));

test('spare: 0 with a failing import: the apply succeeds, each request gets 503 after a new attempt (§9 check 12)', () => withHarness(async (h) => {
  await h.apply({ app: { type: 'python', path: PY, module: 'no_such_module', processes: { spare: 0 } } });
  assert.equal((await request(`${h.front.url}/`)).status, 503);
  assert.equal((await request(`${h.front.url}/`)).status, 503);
  assert.equal(h.rec.text().match(/failed to start application "app"/g)?.length, 2);
  assert.deepEqual(h.manager.status().app, { processes: { running: 0, starting: 0, idle: 0 }, requests: { active: 0 } });
}));

test('on demand: spare 0 → 0 processes, 1 after a request, 0 after idle_timeout (§9 check 15)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ processes: { spare: 0, max: 8, idle_timeout: 1 } }) });
  assert.equal(pids(h).length, 0);
  const pid = await pidOf(h);
  assert.deepEqual(pids(h), [pid]);
  await waitFor(() => pids(h).length === 0 && h.manager.status().app.processes.running === 0, 10_000, 'idle process stopped');
}));

test('spare 2: a busy spare is replenished, then the pool times out back to two (§9 check 16)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ processes: { spare: 2, max: 8, idle_timeout: 1 } }) });
  const original = pids(h);
  assert.equal(original.length, 2);
  const busy = request(`${h.front.url}/sleep?0.5`);
  await waitFor(() => pids(h).length === 3, 10_000, 'third process');
  assert.equal((await busy).status, 200);
  await waitFor(() => pids(h).length === 2, 10_000, 'back to two');
  // At least one of the original spares survives: only processes idle beyond `spare` time out.
  assert.ok(pids(h).some((p) => original.includes(p)));
  assert.deepEqual(h.manager.status().app.processes, { running: 2, starting: 0, idle: 2 });
}));

test('max 1: concurrent requests queue and all succeed; requests.active counts queued ones (§9 check 18)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ processes: { spare: 0, max: 1 } }) });
  const all = [1, 2, 3].map(() => request(`${h.front.url}/sleep?0.3`));
  await waitFor(() => h.manager.status().app.requests.active === 3, 10_000, 'three active');
  const replies = await Promise.all(all);
  assert.deepEqual(replies.map((r) => r.status), [200, 200, 200]);
  assert.equal(new Set(replies.map((r) => r.text)).size, 1, 'one process served them all');
  assert.equal(h.manager.status().app.requests.active, 0);
}));

test('threads: one process serves requests concurrently', () => withHarness(async (h) => {
  await h.apply({ app: echo({ threads: 2 }) });
  const [a, b] = await Promise.all([request(`${h.front.url}/thread?0.4`), request(`${h.front.url}/thread?0.4`)]);
  assert.notEqual(a.text, b.text);
  assert.equal(pids(h).length, 1);
}));

test('generations: an unchanged app keeps its processes; a changed one is replaced after commit (§9 check 22)', () => withHarness(async (h) => {
  await h.apply({ app: echo({ environment: { A: '1' } }) });
  const first = await pidOf(h);
  await h.apply({ app: echo({ environment: { A: '1' } }) });
  assert.equal(await pidOf(h), first);
  const tx = await h.manager.prepare({ app: echo({ environment: { A: '2' } }) });
  assert.equal(pids(h).length, 2, 'the new generation is up before commit');
  assert.equal(await pidOf(h), first, 'the old one serves until commit');
  tx.commit();
  const second = await pidOf(h);
  assert.notEqual(second, first);
  await waitFor(() => !alive(first), 10_000, 'the old generation stops');
  // Reordering keys is a change too (textual comparison, as Unit).
  await h.apply({ app: { module: 'wsgi_echo', path: PY, type: 'python', environment: { A: '2' } } });
  assert.notEqual(await pidOf(h), second);
}));

test('abort() stops what prepare() started; removed apps drain and stop', () => withHarness(async (h) => {
  await h.apply({ app: echo() });
  const first = await pidOf(h);
  const tx = await h.manager.prepare({ app: echo(), other: echo({ processes: 2 }) });
  assert.equal(pids(h).length, 3);
  tx.abort();
  await waitFor(() => pids(h).length === 1, 10_000, 'aborted processes gone');
  assert.deepEqual(pids(h), [first]);
  assert.equal(h.manager.target('other'), undefined);
  const slow = request(`${h.front.url}/sleep?0.5`);
  await waitFor(() => h.manager.status().app.requests.active === 1, 10_000, 'request in flight');
  await h.apply({});
  assert.equal((await slow).status, 200, 'in-flight request finished on the removed app');
  await waitFor(() => pids(h).length === 0, 10_000, 'removed app stopped');
}));

test('restart: new processes serve; old ones finish their requests and stop (§9 check 21)', () => withHarness(async (h) => {
  await h.apply({ app: echo() });
  const first = await pidOf(h);
  const slow = request(`${h.front.url}/sleep?0.5`);
  await waitFor(() => h.manager.status().app.requests.active === 1, 10_000, 'request in flight');
  await h.manager.restart('app');
  const next = await pidOf(h);
  assert.notEqual(next, first);
  const s = await slow;
  assert.equal(s.status, 200);
  assert.equal(Number(s.text), first);
  await waitFor(() => !alive(first), 10_000, 'old process stops');
  await assert.rejects(h.manager.restart('nope'));
}));

test('shutdown(false) stops every process', async () => {
  const h = await harness();
  await h.apply({ a: echo({ processes: 2 }), b: echo({ processes: { spare: 1, max: 2 } }) });
  const all = pids(h);
  assert.equal(all.length, 3);
  await h.manager.shutdown(false);
  await waitFor(() => all.every((p) => !alive(p)), 10_000, 'all stopped');
  await h.close();
});

test('shutdown(true) lets an in-flight request finish', async () => {
  const h = await harness();
  await h.apply({ app: echo() });
  const slow = request(`${h.front.url}/sleep?0.4`);
  await waitFor(() => h.manager.status().app.requests.active === 1, 10_000, 'request in flight');
  await h.manager.shutdown(true);
  assert.equal((await slow).status, 200);
  assert.equal(pids(h).length, 0);
  await h.close();
});
