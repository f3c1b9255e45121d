/**
 * PHP responses as the client sees them: status, fields, cookies, sessions,
 * large bodies, PHP's log messages, and php-cgi dying mid-request.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PhpServer, WWW, tempDir, waitFor } from './php-harness.ts';

let tmp: string;
let php: PhpServer;

before(async () => {
  tmp = tempDir();
  fs.mkdirSync(path.join(tmp, 'sessions'));
  php = await new PhpServer({
    type: 'php', root: WWW,
    options: { admin: { 'session.save_path': path.join(tmp, 'sessions'), log_errors: '1', display_errors: '0' } },
  }, tmp).start();
});

after(async () => {
  await php?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('header(), several Set-Cookie, default status 200', async () => {
  const r = await php.request('/headers.php');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'headers sent');
  assert.equal(r.headers['x-custom'], 'one');
  assert.equal(r.headers['x-multi'], 'a, b');
  assert.equal(r.headers['content-type'], 'text/html; charset=UTF-8');
  assert.deepEqual(r.headers['set-cookie'], [
    'first=1',
    'second=two%20words; path=/x; HttpOnly',
    'third=3; SameSite=Strict',
  ]);
  // The CGI Status field itself is not passed on.
  assert.equal(r.headers.status, undefined);
});

test('http_response_code() and the status line form of header()', async () => {
  let r = await php.request('/headers.php?code=404');
  assert.equal(r.status, 404);
  assert.equal(r.text, 'headers sent');
  r = await php.request('/headers.php?code=299');
  assert.equal(r.status, 299);
  r = await php.request('/headers.php?status_line=1');
  assert.equal(r.status, 418);
});

test('Location without a status: 302; with one: kept', async () => {
  let r = await php.request('/headers.php?location=/elsewhere');
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, '/elsewhere');
  r = await php.request('/headers.php?location=/moved&code=301');
  assert.equal(r.status, 301);
  assert.equal(r.headers.location, '/moved');
});

test('HEAD gets the fields without a body', async () => {
  const r = await php.request('/headers.php', { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-custom'], 'one');
  assert.equal(r.body.length, 0);
});

test('sessions keep state through the session cookie', async () => {
  let r = await php.request('/session.php');
  const cookie = (r.headers['set-cookie'] ?? [])[0];
  assert.match(cookie, /^PHPSESSID=[a-z0-9]+; path=\//);
  const id = cookie.slice('PHPSESSID='.length, cookie.indexOf(';'));
  assert.deepEqual(JSON.parse(r.text), { n: 1, id });
  r = await php.request('/session.php', { headers: { Cookie: `PHPSESSID=${id}` } });
  assert.deepEqual(JSON.parse(r.text), { n: 2, id });
  r = await php.request('/session.php', { headers: { Cookie: `PHPSESSID=${id}` } });
  assert.deepEqual(JSON.parse(r.text), { n: 3, id });
  assert.ok(fs.existsSync(path.join(tmp, 'sessions', `sess_${id}`)));
});

test('a large response streams through', async () => {
  const mb = 24;
  const res = await fetch(`http://127.0.0.1:${php.port}/big.php?mb=${mb}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  const hash = crypto.createHash('sha256');
  let size = 0;
  for await (const chunk of res.body!) {
    hash.update(chunk);
    size += chunk.length;
  }
  const block = Buffer.from('0123456789abcdef'.repeat(4096));
  const expected = crypto.createHash('sha256');
  for (let i = 0; i < mb * 16; i++) expected.update(block);
  assert.equal(size, mb * 1024 * 1024);
  assert.equal(hash.digest('hex'), expected.digest('hex'));
});

test('a slow reader holds php-cgi back without losing data', async () => {
  const res = await fetch(`http://127.0.0.1:${php.port}/big.php?mb=8`);
  const reader = res.body!.getReader();
  let size = 0;
  let reads = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    // Let the pipe fill up now and then.
    if (++reads % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  assert.equal(size, 8 * 1024 * 1024);
});

test('PHP messages go to the error log as Unit writes them', async () => {
  const r = await php.request('/log.php');
  assert.equal(r.text, 'logged');
  const pid = php.process!.pid;
  const lines = await waitFor(() => {
    const l = php.logs.filter((x) => x.includes('php message:'));
    return l.length >= 2 ? l : undefined;
  }, 'log lines');
  const re = (text: string) => new RegExp(
    `^\\d{4}/\\d\\d/\\d\\d \\d\\d:\\d\\d:\\d\\d \\[notice\\] ${pid}#${pid} \\[unit\\] #\\d+: php message: ${text}\\n$`);
  assert.ok(lines.some((l) => re('message from error_log').test(l)), lines.join(''));
  assert.ok(lines.some((l) => re('PHP Warning:  a user warning in .*/log\\.php on line 4').test(l)), lines.join(''));
});

test('php-cgi dying before the header: 503; a new process serves the next request', async () => {
  const old = php.process!;
  const r = await php.request('/die.php');
  assert.equal(r.status, 503);
  assert.match(r.text, /Error 503/);
  const exit = await php.host.waitExit(old.pid);
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(old.connection.closed, true);
  const next = await php.request('/pid.php');
  assert.equal(next.status, 200);
  assert.notEqual(next.text, String(old.pid));
});

test('php-cgi dying after the header: the client connection is closed, body cut', async () => {
  const old = php.process!;
  const r = await php.request('/die.php?after=1');
  assert.equal(r.status, 200);
  assert.equal(r.aborted, true);
  assert.ok(r.body.length <= 100_000);
  await php.host.waitExit(old.pid);
  const next = await php.request('/pid.php');
  assert.equal(next.status, 200);
});

test('abandon(): 503 before the header, the process finishes its request and serves on', async () => {
  const pid = php.process!.pid;
  const target = php.app.target()!;
  const conn = php.process!.connection;
  // Drive one exchange by hand: the harness's queue is idle between requests.
  const http = await import('node:http');
  const outcome = await new Promise<{ status: number; done: boolean }>((resolve) => {
    const server = http.createServer(async (req, res) => {
      let done = false;
      const ex = await target.serve({
        req, res, target: '/sleep.php?ms=300', path: '/sleep.php', query: 'ms=300',
        remoteAddr: '127.0.0.1', localAddr: '127.0.0.1', localPort: '80', serverName: 'localhost', tls: false,
        rawHeaders: req.rawHeaders,
        fail(status) { res.writeHead(status); res.end(); },
      }, conn, { onDone() { done = true; } });
      assert.ok(ex, `not run: ${res.statusCode}`);
      ex.abandon();
      await waitFor(() => done, 'onDone');
      resolve({ status: res.statusCode, done });
      server.close();
    }).listen(0, '127.0.0.1', () => {
      http.get({ host: '127.0.0.1', port: (server.address() as { port: number }).port, path: '/', agent: false }, (res) => res.resume());
    });
  });
  assert.deepEqual(outcome, { status: 503, done: true });
  assert.equal(conn.available, true);
  const r = await php.request('/pid.php');
  assert.equal(r.text, String(pid));
});
