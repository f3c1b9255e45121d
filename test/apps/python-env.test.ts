/**
 * What a Python application process looks like from inside: virtualenv
 * `home`, sys.argv and sys.path, working directory, credentials (§2.1, §3.2, §9 check 24).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, PYTHON, harness, json, request, runDir } from './helpers.ts';

const PY = join(FIXTURES, 'python');

test('home with a pyvenv.cfg runs the virtualenv interpreter; sys.argv is ["unit"]; path comes first', async (t) => {
  const venv = runDir();
  t.after(() => venv.remove());
  execFileSync(PYTHON, ['-m', 'venv', '--without-pip', join(venv.path, 'env')]);
  const site = execFileSync(join(venv.path, 'env/bin/python'), ['-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], { encoding: 'utf8' }).trim() + '/venv_only.py';
  writeFileSync(site, 'VALUE = 1\n');
  const h = await harness();
  t.after(() => h.close());
  await h.apply({ app: { type: 'python', home: join(venv.path, 'env'), path: PY, module: 'wsgi_echo', working_directory: venv.path } });
  const sys = await json(`${h.front.url}/sys`);
  assert.equal(sys.prefix, join(venv.path, 'env'));
  // The virtualenv's own packages are importable.
  const imported = await request(`${h.front.url}/import?venv_only`);
  assert.equal(imported.text, site);
  assert.deepEqual(sys.argv, ['unit']);
  assert.equal(sys.path[0], PY);
  assert.ok(!sys.path.some((p: string) => p.endsWith('launchers/python')), 'launcher directory not importable');
  assert.equal(sys.cwd, venv.path);
});

test('user without group: the user\'s uid, primary gid and group list (when root)', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const h = await harness();
  t.after(() => h.close());
  await h.apply({ app: { type: 'python', path: PY, module: 'wsgi_echo', user: 'nobody' } });
  const sys = await json(`${h.front.url}/sys`);
  const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }));
  const groups = execFileSync('id', ['-G', 'nobody'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number).sort((a, b) => a - b);
  assert.deepEqual(sys.ids, [uid, gid, groups]);
});
