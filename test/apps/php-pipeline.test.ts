/**
 * A busy php-cgi process is given its next request before it is done with
 * the current one (PhpConnection.slots), through the real pool: the
 * waiting request is answered in turn, runs elsewhere when the process dies
 * first, does not stall anything when its client leaves, waits for its turn
 * to stream a body, and never goes past `limits.requests`; a pool that may
 * still grow starts a process instead. Also: a client
 * that stops reading does not hold up the process's next request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { harness, request, waitFor, type Harness } from './helpers.ts';
import { PhpServer, WWW, tempDir } from './php-harness.ts';
import { PhpApp } from '../../src/apps/php.ts';

const PHP_MODULES = [{ type: 'php', version: '8', lib: '/usr/bin/php-cgi' }];

async function withPhp(conf: Record<string, unknown>, fn: (h: Harness, dir: string) => Promise<void>): Promise<void> {
  const h = await harness({ modules: PHP_MODULES });
  const dir = tempDir();
  try {
    await h.apply({ app: { type: 'php', root: WWW, ...conf } });
    await fn(h, dir);
  } finally {
    await h.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** wait.php: marks `name`.mark when it runs, answers once `name`.release exists. */
function waiting(dir: string, name: string): { path: string; started(): Promise<unknown>; release(): void } {
  const mark = path.join(dir, `${name}.mark`);
  const release = path.join(dir, `${name}.release`);
  return {
    path: `/wait.php?mark=${encodeURIComponent(mark)}&release=${encodeURIComponent(release)}`,
    started: () => waitFor(() => fs.existsSync(mark), 10_000, `${name} running`),
    release: () => fs.writeFileSync(release, ''),
  };
}

const active = (h: Harness) => h.manager.status().app.requests.active;
const phpPids = (h: Harness) => [...h.host.children.keys()];

test('every process busy: the next request waits at the process and is answered after the running one', () => withPhp({ processes: 1 }, async (h, dir) => {
  const slow = waiting(dir, 'a');
  const first = request(`${h.front.url}${slow.path}`);
  await slow.started();
  const second = request(`${h.front.url}/pid.php`);
  await waitFor(() => active(h) === 2, 10_000, 'two requests at the process');
  slow.release();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(a.text, b.text, 'the same process');
  assert.equal(h.manager.status().app.processes.running, 1);
}));

test('the process dies: the running request gets 503, the waiting one runs on a replacement', () => withPhp({ processes: 1 }, async (h, dir) => {
  const slow = waiting(dir, 'a');
  const first = request(`${h.front.url}${slow.path}`);
  await slow.started();
  const [pid] = phpPids(h);
  const second = request(`${h.front.url}/pid.php`);
  await waitFor(() => active(h) === 2, 10_000, 'two requests at the process');
  process.kill(pid, 'SIGKILL');
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 503);
  assert.equal(b.status, 200);
  assert.notEqual(b.text, String(pid));
}));

test('the client of a waiting request leaves: the process runs it, the next requests are served', () => withPhp({ processes: 1 }, async (h, dir) => {
  const slow = waiting(dir, 'a');
  const first = request(`${h.front.url}${slow.path}`);
  await slow.started();
  const client = net.connect(h.front.port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  client.on('error', () => {});
  client.write('GET /pid.php HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => active(h) === 2, 10_000, 'two requests at the process');
  client.destroy();
  slow.release();
  assert.equal((await first).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await request(`${h.front.url}/pid.php`)).status, 200);
  await waitFor(() => active(h) === 0, 10_000, 'nothing active');
}));

test('a request with a body waits for its turn, then streams it', () => withPhp({ processes: 1 }, async (h, dir) => {
  const slow = waiting(dir, 'a');
  const first = request(`${h.front.url}${slow.path}`);
  await slow.started();
  const body = Buffer.alloc(200_000, 'b');
  const reply = new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request(`${h.front.url}/post.php`, {
      method: 'POST', agent: false, headers: { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream' },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    req.write(body.subarray(0, 1000));
    void waitFor(() => active(h) === 2, 10_000, 'two requests at the process').then(() => {
      slow.release();
      req.end(body.subarray(1000));
    }, reject);
  });
  assert.equal((await first).status, 200);
  const r = await reply;
  assert.equal(r.status, 200, r.text);
  const info = JSON.parse(r.text);
  assert.equal(info.input_length, body.length);
  assert.equal(info.content_length, String(body.length));
}));

test('a pool that may grow starts a process for a request rather than queueing it at a busy one', () => withPhp({ processes: { max: 2, spare: 0 } }, async (h, dir) => {
  const slow = waiting(dir, 'a');
  const first = request(`${h.front.url}${slow.path}`);
  await slow.started();
  // Answered while the first one still runs: by a second process.
  const second = await request(`${h.front.url}/pid.php`);
  assert.equal(second.status, 200);
  assert.equal(h.manager.status().app.processes.running, 2);
  slow.release();
  const a = await first;
  assert.equal(a.status, 200);
  assert.notEqual(a.text, second.text);
}));

test('limits.requests: no request is given to a process past its last one', () => withPhp({ processes: 1, limits: { requests: 2 } }, async (h) => {
  const replies = await Promise.all(Array.from({ length: 9 }, () => request(`${h.front.url}/pid.php`)));
  assert.deepEqual(replies.map((r) => r.status), Array(9).fill(200));
  const per = new Map<string, number>();
  for (const r of replies) per.set(r.text, (per.get(r.text) ?? 0) + 1);
  for (const [pid, n] of per) assert.ok(n <= 2, `process ${pid} served ${n}`);
}));

test('limits.timeout turns the waiting requests off: its timer starts only when the process takes a request', () => {
  assert.equal(new PhpApp('a', { type: 'php', root: WWW }).pipeline, true);
  assert.equal(new PhpApp('a', { type: 'php', root: WWW, limits: { timeout: 5 } }).pipeline, false);
});

test('a client that stops reading does not hold up the next request to the process', async () => {
  const dir = tempDir();
  const php = await new PhpServer({ type: 'php', root: WWW }, dir).start();
  try {
    // The first response (small: php-cgi sends it whole, with the end of the request) meets a
    // client that is "full" for good: write() says so and no drain ever comes.
    php.onRequest = (r) => {
      php.onRequest = undefined;
      const res = r.res as http.ServerResponse & { write: (...a: unknown[]) => boolean };
      const write = res.write.bind(res);
      res.write = (...a: unknown[]) => { write(...a as [Buffer]); return false; };
    };
    const first = await php.request('/pid.php');
    assert.equal(first.status, 200);
    const next = await php.request('/pid.php');
    assert.equal(next.status, 200);
    assert.equal(next.text, String(php.process!.pid));
  } finally {
    await php.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
