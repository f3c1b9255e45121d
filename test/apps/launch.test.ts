/**
 * Module discovery and selection (spec/applications.md §2.2, §5) and the
 * launch description of application objects (§2.1, §2.3, §3.1, §3.2).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { discoverModules, selectModule, parseType, sortModules, type ModuleInfo } from '../../src/apps/discovery.ts';
import { describeApp, poolConfig, runsNode, withoutUnitLoader, NODE_PRELOAD, PYTHON_LAUNCHER } from '../../src/apps/launch.ts';

const mods: ModuleInfo[] = [
  { type: 'python', version: '3.9.18', lib: '/usr/bin/python3.9' },
  { type: 'python', version: '3.11.2', lib: '/usr/bin/python3.11' },
  { type: 'php', version: '8.2.7', lib: '/usr/bin/php-cgi8.2' },
  { type: 'python', version: '3.12.1', lib: '/usr/local/bin/python3.12' },
];

test('discoverModules finds the system Python and php-cgi with their full versions', async () => {
  const found = await discoverModules();
  const py = found.find((m) => m.lib === '/usr/bin/python3.11');
  assert.ok(py, JSON.stringify(found));
  assert.equal(py.type, 'python');
  assert.match(py.version, /^3\.11\.\d+$/);
  assert.deepEqual(found, sortModules(found));
  const php = found.find((m) => m.type === 'php');
  if (fs.existsSync('/usr/bin/php-cgi')) {
    assert.ok(php, JSON.stringify(found));
    assert.match(php.version, /^\d+\.\d+\.\d+$/);
    assert.match(php.lib, /\/php-cgi/);
  }
});

test('type parsing and version selection at component boundaries (§2.2)', () => {
  assert.deepEqual(parseType('python'), { language: 'python', version: '' });
  assert.deepEqual(parseType('python 3.11'), { language: 'python', version: '3.11' });
  assert.deepEqual(parseType('python3.11'), { language: 'python', version: '3.11' });
  assert.deepEqual(parseType('go'), { language: 'external', version: '' });
  assert.equal(selectModule('python', mods)?.version, '3.12.1');
  assert.equal(selectModule('python 3', mods)?.version, '3.12.1');
  assert.equal(selectModule('python 3.11', mods)?.version, '3.11.2');
  assert.equal(selectModule('python3.9', mods)?.version, '3.9.18');
  assert.equal(selectModule('python 3.1', mods), undefined);
  assert.equal(selectModule('python 9', mods), undefined);
  assert.equal(selectModule('php 8.2.7', mods)?.lib, '/usr/bin/php-cgi8.2');
  assert.equal(selectModule('external', mods)?.type, 'external');
  assert.equal(selectModule('go', []), selectModule('external', []));
  assert.equal(selectModule('external 1', mods), undefined);
  assert.equal(selectModule('ruby', mods), undefined);
});

test('processes and limits map to the pool parameters (§2.3, §2.4)', () => {
  assert.deepEqual(poolConfig({}), { max: 1, spare: 1, idleTimeout: 15000, timeout: 0, requests: 0 });
  assert.deepEqual(poolConfig({ processes: 4 }), { max: 4, spare: 4, idleTimeout: 15000, timeout: 0, requests: 0 });
  assert.deepEqual(poolConfig({ processes: {} }), { max: 1, spare: 0, idleTimeout: 15000, timeout: 0, requests: 0 });
  assert.deepEqual(poolConfig({ processes: { max: 8, spare: 2, idle_timeout: 1 }, limits: { timeout: 3, requests: 10 } }),
    { max: 8, spare: 2, idleTimeout: 1000, timeout: 3000, requests: 10 });
});

test('external: executable against working_directory, merged environment, preload, Node readiness (§3.1)', () => {
  const a = describeApp('go-app', { type: 'external', working_directory: '/srv', executable: 'bin/app', arguments: ['-v'], environment: { PATH: '/x', FOO: 'bar' } },
    { modules: mods, env: { PATH: '/usr/bin', HOME: '/root', NODE_CHANNEL_FD: '3', NODE_OPTIONS: '--trace-warnings' } });
  assert.equal(a.spec.executable, '/srv/bin/app');
  assert.deepEqual(a.spec.arguments, ['-v']);
  assert.equal(a.spec.cwd, '/srv');
  assert.equal(a.spec.env.PATH, '/x');
  assert.equal(a.spec.env.FOO, 'bar');
  assert.equal(a.spec.env.HOME, '/root');
  assert.equal(a.spec.env.NODE_CHANNEL_FD, undefined);
  assert.equal(a.spec.env.NODE_OPTIONS, `--trace-warnings --require ${NODE_PRELOAD}`);
  assert.equal(a.spec.waitReady, false);
  assert.equal(a.transport, 'http');
  assert.ok(runsNode('/usr/bin/node', []));
  assert.ok(runsNode('/usr/bin/env', ['node', 'app.js']));
  assert.ok(runsNode('/usr/bin/env', ['-S', 'NODE_ENV=production', 'nodejs', 'app.js']));
  assert.ok(!runsNode('/usr/bin/env', ['python3', 'app.py']));
  const unit = describeApp('n', { type: 'external', executable: '/usr/bin/env',
    arguments: ['node', '--loader', 'unit-http/loader.mjs', '--require', 'unit-http/loader', 'app.js'] }, { modules: [] });
  assert.deepEqual(unit.spec.arguments, ['node', 'app.js']);
  assert.equal(unit.spec.waitReady, true);
  assert.deepEqual(withoutUnitLoader(['--import=unit-http/loader.mjs', '-r', 'dotenv/config', 'a.js']), ['-r', 'dotenv/config', 'a.js']);
});

test('python: interpreter of the selected module, launcher, options in the environment (§3.2)', () => {
  const a = describeApp('py', { type: 'python 3.11', module: 'wsgi', path: ['/a', 'b'], threads: 4, prefix: '/api/', working_directory: '/srv/app', user: 'nobody', stdout: 'out.log' },
    { modules: mods, env: {} });
  assert.equal(a.spec.executable, '/usr/bin/python3.11');
  assert.deepEqual(a.spec.arguments, [PYTHON_LAUNCHER]);
  assert.equal(a.spec.waitReady, true);
  assert.equal(a.spec.user, 'nobody');
  assert.equal(a.spec.stdout, 'out.log');
  assert.equal(a.transport, 'appproto');
  assert.equal(a.slots, 4);
  const opts = JSON.parse(a.spec.env.JUNCTION_PYTHON_OPTIONS);
  assert.deepEqual(opts, { module: 'wsgi', factory: false, prefix: '/api/', path: ['/a', 'b'], threads: 4 });
  const t = describeApp('py', { type: 'python', targets: { x: { module: 'a' }, y: { module: 'b', callable: 'c', prefix: '/y' } } }, { modules: mods, noDaemon: true });
  assert.deepEqual(t.targets, ['x', 'y']);
  assert.equal(JSON.parse(t.spec.env.JUNCTION_PYTHON_OPTIONS).targets[1].callable, 'c');
  const dflt = describeApp('py', { type: 'python', module: 'm' }, { modules: mods, user: 'unit', group: 'unit' });
  assert.deepEqual([dflt.spec.user, dflt.spec.group], ['unit', 'unit']);
  const own = describeApp('py', { type: 'python', module: 'm', user: 'www' }, { modules: mods, user: 'unit', group: 'unit' });
  assert.deepEqual([own.spec.user, own.spec.group], ['www', undefined]);
  const home = describeApp('py', { type: 'python', module: 'm', home: '/opt/not-a-venv' }, { modules: mods, env: {} });
  assert.equal(home.spec.env.PYTHONHOME, '/opt/not-a-venv');
  assert.throws(() => describeApp('x', { type: 'python 9', module: 'm' }, { modules: mods }),
    { message: 'The module to run "python 9" is not found among the available application modules.' });
  assert.throws(() => describeApp('x', { type: 'ruby', script: 'config.ru' }, { modules: mods }),
    { message: 'The module to run "ruby" is not found among the available application modules.' });
});

test('php: php-cgi of the selected module on fd 0, FastCGI, one request per process (§3.3)', () => {
  const a = describeApp('site', {
    type: 'php 8', root: 'www', working_directory: '/srv', environment: { A: 'b' }, stdout: 'out.log',
    options: { admin: { memory_limit: '64M' } }, limits: { requests: 7 },
  }, { modules: mods, env: { PATH: '/usr/bin', NODE_CHANNEL_FD: '3' } });
  assert.equal(a.transport, 'fastcgi');
  assert.equal(a.slots, 1);
  assert.deepEqual(a.targets, []);
  assert.ok(a.php);
  assert.equal(a.php.cwd, '/srv');
  assert.equal(a.spec.executable, '/bin/sh');
  assert.deepEqual(a.spec.arguments.slice(2), ['/usr/bin/php-cgi8.2', '-d', 'memory_limit=64M']);
  assert.equal(a.spec.cwd, '/srv');
  assert.equal(a.spec.waitReady, false);
  assert.equal(a.spec.stdout, 'out.log');
  assert.equal(a.spec.env.A, 'b');
  assert.equal(a.spec.env.PHP_FCGI_CHILDREN, '0');
  assert.equal(a.spec.env.PHP_FCGI_MAX_REQUESTS, '7');
  assert.equal('NODE_CHANNEL_FD' in a.spec.env, false);
  const t = describeApp('site', { type: 'php', targets: { one: { root: '/a' }, two: { root: '/b', script: 'i.php' } }, stdout: 'out.log' },
    { modules: mods, noDaemon: true, user: 'unit', group: 'unit' });
  assert.deepEqual(t.targets, ['one', 'two']);
  assert.equal(t.spec.stdout, undefined);
  assert.deepEqual([t.spec.user, t.spec.group], ['unit', 'unit']);
  const own = describeApp('site', { type: 'php', root: '/a', user: 'www' }, { modules: mods, user: 'unit', group: 'unit' });
  assert.deepEqual([own.spec.user, own.spec.group], ['www', undefined]);
  assert.throws(() => describeApp('x', { type: 'php 7', root: '/' }, { modules: mods }),
    { message: 'The module to run "php 7" is not found among the available application modules.' });
});
