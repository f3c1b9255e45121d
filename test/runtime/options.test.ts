import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, UsageError, defaults } from '../../src/runtime/options.ts';

test('unitd flags map to options; deprecated aliases still work', () => {
  const warnings: string[] = [];
  const r = parseArgs(['--no-daemon', '--control', '127.0.0.1:8443', '--control-mode', '0660', '--state', '/s', '--tmp', '/t',
    '--log', '/l', '--pid', '/p', '--user', 'www', '--group', 'www', '--modules', '/m'], 'junction', (w) => warnings.push(w));
  assert.ok('run' in r);
  assert.deepEqual(
    { ...r.run },
    { ...r.run, daemon: false, control: '127.0.0.1:8443', controlMode: 0o660, statedir: '/s', tmpdir: '/t', log: '/l', pid: '/p', user: 'www', group: 'www', modulesdir: '/m' },
  );
  assert.equal(warnings.length, 3);
});

test('an unparsable control mode falls back to 0600', () => {
  const r = parseArgs(['--control-mode', 'rw'], 'junction');
  assert.ok('run' in r && r.run.controlMode === 0o600);
});

test('errors use unitd\'s wording', () => {
  assert.throws(() => parseArgs(['--pid=/x'], 'junction'), new UsageError('unknown option "--pid=/x", try "junction -h" for available options'));
  assert.throws(() => parseArgs(['--statedir'], 'junction'), new UsageError('option "--statedir" requires directory'));
});

test('non-root defaults live under one per-user directory', () => {
  const d = defaults(false, { JUNCTION_HOME: '/home/u/.j' });
  assert.equal(d.control, 'unix:/home/u/.j/control.unit.sock');
  assert.equal(d.statedir, '/home/u/.j/state');
  assert.equal(d.log, '/home/u/.j/unit.log');
  assert.equal(d.pid, '/home/u/.j/unit.pid');
  const root = defaults(true, {});
  assert.equal(root.control, 'unix:/var/run/control.unit.sock');
});
