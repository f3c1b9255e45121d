import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleNames, compileTls, confCommands } from '../../src/router/tls.ts';

function bundle(subj: string, san?: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'junction-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', `${dir}/k`, '-out', `${dir}/c`,
      '-days', '2', '-subj', subj, ...(san ? ['-addext', `subjectAltName=${san}`] : [])], { stdio: 'ignore' });
    return fs.readFileSync(`${dir}/c`, 'utf8') + fs.readFileSync(`${dir}/k`, 'utf8');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('bundle names: DNS alt names when present, else the CN, lower case', () => {
  assert.deepEqual(bundleNames(bundle('/CN=Ignored.example', 'DNS:A.example,DNS:*.b.example,IP:127.0.0.1')), ['a.example', '*.b.example']);
  assert.deepEqual(bundleNames(bundle('/CN=Only.CN.example')), ['only.cn.example']);
});

test('SNI selection follows Unit: exact, one-label wildcard, first bundle otherwise', () => {
  const b = { first: bundle('/CN=first.example'), wild: bundle('/CN=x', 'DNS:*.b.example'), exact: bundle('/CN=x', 'DNS:a.b.example') };
  const t = compileTls({ certificate: ['first', 'wild', 'exact'] }, b);
  assert.equal(t.select(undefined), t.defaultContext);
  assert.equal(t.select('.x'), t.defaultContext);
  assert.equal(t.select('nothing.example'), t.defaultContext);
  assert.notEqual(t.select('a.b.example'), t.select('c.b.example'));
  assert.notEqual(t.select('C.B.example'), t.defaultContext);
  assert.equal(t.select('b.example'), t.defaultContext, 'a wildcard never matches its own base name');
  assert.equal(t.select('x.c.b.example'), t.defaultContext, 'a wildcard covers exactly one label');
});

test('conf_commands map to Node options; unknown commands are refused', () => {
  assert.deepEqual(confCommands({ MinProtocol: 'TLSv1.2', CipherString: 'HIGH' }), { minVersion: 'TLSv1.2', ciphers: 'HIGH' });
  assert.deepEqual(confCommands({ Protocol: '-TLSv1, -TLSv1.1' }), { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' });
  assert.throws(() => confCommands({ VerifyMode: 'Peer' }), /unsupported command "VerifyMode"/);
  assert.throws(() => compileTls({ certificate: 'missing' }, {}), /certificate "missing" is not available/);
});
