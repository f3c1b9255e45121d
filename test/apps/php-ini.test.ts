/**
 * `options` of the php type (spec/applications.md §3.3): `file` → `-c`,
 * `admin` and `user` → `-d`, unknown directives logged; and the process life
 * cycle: `limits.requests`, graceful stop, start failures.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PhpServer, TestHost, FIXTURES, WWW, tempDir } from './php-harness.ts';
import { PhpApp, type PhpAppConfig } from '../../src/apps/php.ts';

interface Ini {
  get: Record<string, string | false>;
  set: Record<string, string | false>;
  after: Record<string, string | false>;
  exec_exists: boolean;
  pid: number;
}

const dirs: string[] = [];
const servers: PhpServer[] = [];

async function serve(conf: Omit<PhpAppConfig, 'type'>): Promise<PhpServer> {
  const dir = tempDir();
  dirs.push(dir);
  const s = new PhpServer({ type: 'php', root: WWW, ...conf }, dir);
  servers.push(s);
  return s.start();
}

after(async () => {
  for (const s of servers) await s.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const setQuery = (o: Record<string, string>) => `/ini.php?set=${encodeURIComponent(JSON.stringify(o))}`;

test('admin and user values are in force; user values can be changed with ini_set', async () => {
  const php = await serve({
    options: {
      admin: { memory_limit: '64M', disable_functions: 'exec', max_execution_time: '7' },
      user: { precision: '5', display_errors: '1' },
    },
  });
  const r = await php.json<Ini>(setQuery({ precision: '7', disable_functions: '' }));
  assert.equal(r.get.memory_limit, '64M');
  assert.equal(r.get.max_execution_time, '7');
  assert.equal(r.get.disable_functions, 'exec');
  assert.equal(r.exec_exists, false);
  assert.equal(r.get.precision, '5');
  assert.equal(r.get.display_errors, '1');
  // user level: changeable
  assert.equal(r.set.precision, '5');
  assert.equal(r.after.precision, '7');
  // a system-level directive cannot be changed at run time
  assert.equal(r.set.disable_functions, false);
  assert.equal(r.after.disable_functions, 'exec');
});

test('admin values of run-time directives stay changeable under php-cgi (documented difference from Unit)', async () => {
  const php = await serve({ options: { admin: { memory_limit: '64M' } } });
  const r = await php.json<Ini>(setQuery({ memory_limit: '80M' }));
  assert.equal(r.set.memory_limit, '64M');
  assert.equal(r.after.memory_limit, '80M');
});

test('a user value wins over an admin value of the same name', async () => {
  const php = await serve({ options: { admin: { precision: '4' }, user: { precision: '6' } } });
  const r = await php.json<Ini>('/ini.php');
  assert.equal(r.get.precision, '6');
});

test('options.file replaces php.ini (relative to working_directory)', async () => {
  const php = await serve({ working_directory: FIXTURES, options: { file: 'custom.ini', user: { precision: '11' } } });
  const r = await php.json<Ini>('/ini.php');
  assert.equal(r.get.memory_limit, '96M');
  assert.equal(r.get.precision, '11');
  assert.ok(php.app.spawnSpec().arguments.includes(path.join(FIXTURES, 'custom.ini')));
});

test('unknown directives are logged at [error] and left out', async () => {
  const php = await serve({ options: { admin: { 'no.such.directive': 'x' }, user: { precision: '8' } } });
  const r = await php.json<Ini>('/ini.php');
  assert.equal(r.get.precision, '8');
  assert.ok(php.logs.some((l) => /\[error\] \d+#\d+ setting PHP option "no\.such\.directive: x" failed\n$/.test(l)), php.logs.join(''));
  assert.ok(!php.app.spawnSpec().arguments.some((a) => a.startsWith('no.such.directive')));
});

test('the launch: socket on fd 0, no php-cgi children, max requests from limits', async () => {
  const php = await serve({ limits: { requests: 3 }, environment: { PHP_FCGI_CHILDREN: '8' } });
  const spec = php.app.spawnSpec();
  assert.equal(spec.executable, '/bin/sh');
  assert.equal(spec.arguments[0], '-c');
  assert.match(spec.arguments[1], /exec "\$0" "\$@" 0<&3 3<&-$/);
  assert.match(spec.arguments[2], /\/php-cgi$/);
  assert.equal(spec.env.PHP_FCGI_CHILDREN, '0');
  assert.equal(spec.env.PHP_FCGI_MAX_REQUESTS, '3');
  assert.equal(spec.waitReady, false);
  const unlimited = new PhpApp('unlimited', { type: 'php', root: WWW });
  await unlimited.prepare();
  assert.equal(unlimited.spawnSpec().env.PHP_FCGI_MAX_REQUESTS, '0');
});

test('limits.requests: the process serves that many requests, then a new one takes over', async () => {
  const php = await serve({ limits: { requests: 2 } });
  const a = await php.request('/pid.php');
  const b = await php.request('/pid.php');
  assert.equal(a.text, b.text);
  const first = Number(a.text);
  const exit = await php.host.waitExit(first);
  assert.deepEqual(exit, { code: 0, signal: null });
  const c = await php.request('/pid.php');
  assert.equal(c.status, 200);
  assert.notEqual(c.text, a.text);
  assert.deepEqual(php.pids, [first, Number(c.text)]);
});

test('graceful stop: close() then SIGTERM ends php-cgi with code 0', async () => {
  const php = await serve({});
  const r = await php.request('/pid.php');
  const pid = Number(r.text);
  php.process!.connection.close();
  assert.equal(php.process!.connection.available, false);
  php.host.kill(pid, 'SIGTERM');
  assert.deepEqual(await php.host.waitExit(pid), { code: 0, signal: null });
});

test('a php-cgi that cannot start fails start()', async () => {
  const dir = tempDir();
  dirs.push(dir);
  const host = new TestHost(dir);
  const broken = new PhpApp('broken', { type: 'php', root: WWW }, {
    phpCgi: path.join(dir, 'missing-php-cgi'), env: { PATH: '/usr/bin:/bin' }, writeLog: () => {},
  });
  await assert.rejects(broken.start(host), /closed the connection before answering|connect\(unix:/);
});
