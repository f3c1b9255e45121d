/**
 * `/certificates` as a Unit client sees it (spec/control-api.md §9, §13 #37–#41),
 * with bundles made by the openssl command.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Junction, freePort } from './harness.ts';

/** A self-signed certificate and its key, PEM, made by openssl in `dir`. */
function makeBundle(dir: string, name: string, keyArgs: string[], extra: string[] = []): string {
  const key = path.join(dir, `${name}.key`);
  const crt = path.join(dir, `${name}.crt`);
  execFileSync('openssl', ['req', '-x509', '-nodes', ...keyArgs, '-keyout', key, '-out', crt, '-days', '30', ...extra], { stdio: 'ignore' });
  return fs.readFileSync(crt, 'utf8') + fs.readFileSync(key, 'utf8');
}

describe('certificates', () => {
  let j: Junction;
  let rsa: string;
  let ec: string;

  before(async () => {
    j = await Junction.start();
    rsa = makeBundle(j.dir, 'site', ['-newkey', 'rsa:2048'],
      ['-subj', '/C=US/ST=CA/O=Acme/CN=example.com', '-addext', 'subjectAltName=DNS:example.com,DNS:www.example.com,IP:127.0.0.1']);
    ec = makeBundle(j.dir, 'ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'], ['-subj', '/CN=ec.example']);
  });
  after(async () => { await j.cleanup(); });

  test('#37 upload, duplicate, info, file on disk', async () => {
    const up = await j.api('PUT', '/certificates/site', rsa);
    assert.equal(up.status, 200);
    assert.deepEqual(up.json, { success: 'Certificate chain uploaded.' });
    const again = await j.api('PUT', '/certificates/site', rsa);
    assert.equal(again.status, 400);
    assert.deepEqual(again.json, { error: 'Certificate already exists.' });
    assert.equal((await j.api('GET', '/certificates/site/key')).json, 'RSA (2048 bits)');
    const info = (await j.api('GET', '/certificates/site')).json;
    assert.deepEqual(info.chain[0].subject, {
      common_name: 'example.com', alt_names: ['example.com', 'www.example.com'], country: 'US', state_or_province: 'CA', organization: 'Acme',
    });
    assert.deepEqual(info.chain[0].issuer, { common_name: 'example.com', country: 'US', state_or_province: 'CA', organization: 'Acme' });
    assert.match(info.chain[0].validity.since, /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT$/);
    assert.equal(fs.readFileSync(path.join(j.statedir, 'certs', 'site'), 'utf8'), rsa);
    assert.equal(fs.statSync(path.join(j.statedir, 'certs', 'site')).mode & 0o777, 0o600);
    assert.ok((await j.api('GET', '/certificates')).json.site);
    assert.ok((await j.api('GET', '/')).json.certificates.site);
    assert.deepEqual((await j.api('GET', '/certificates/site/nope')).json, { error: 'Invalid path.' });
    assert.deepEqual((await j.api('GET', '/certificates/ghost')).json, { error: "Certificate doesn't exist." });
  });

  test('an EC key is ECDH; a certificate without alt names has none', async () => {
    assert.equal((await j.api('PUT', '/certificates/ec', ec)).status, 200);
    const info = (await j.api('GET', '/certificates/ec')).json;
    assert.equal(info.key, 'ECDH');
    assert.deepEqual(info.chain[0].subject, { common_name: 'ec.example' });
  });

  test('#38 bundles without a key, with two keys, or with other blocks are invalid', async () => {
    const certOnly = rsa.slice(0, rsa.indexOf('-----BEGIN PRIVATE KEY-----'));
    const keyOnly = rsa.slice(rsa.indexOf('-----BEGIN PRIVATE KEY-----'));
    for (const body of [certOnly, rsa + keyOnly, rsa + '-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n', 'garbage']) {
      const r = await j.api('PUT', '/certificates/bad', body);
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: 'Invalid certificate.' });
    }
    assert.ok(!fs.existsSync(path.join(j.statedir, 'certs', 'bad')));
  });

  test('#39 #40 references from listeners', async () => {
    const port = await freePort();
    const ghost = await j.api('PUT', `/config/listeners/127.0.0.1:${port}`, { pass: 'routes', tls: { certificate: 'ghost' } });
    assert.deepEqual(ghost.json, { error: 'Invalid configuration.', detail: 'Certificate "ghost" is not found.' });
    const fresh = makeBundle(j.dir, 'used', ['-newkey', 'rsa:2048'], ['-subj', '/CN=used.example']);
    assert.equal((await j.api('PUT', '/certificates/used', fresh)).status, 200);
    const withTls = { listeners: { [`127.0.0.1:${port}`]: { pass: 'routes', tls: { certificate: ['used'] } } }, routes: [{ action: { return: 200 } }] };
    assert.equal((await j.api('PUT', '/config', withTls)).status, 200);
    const inUse = await j.api('DELETE', '/certificates/used');
    assert.equal(inUse.status, 400);
    assert.deepEqual(inUse.json, { error: 'Certificate is used in the configuration.' });
    assert.equal((await j.api('DELETE', `/config/listeners/127.0.0.1:${port}`)).status, 200);
    assert.deepEqual((await j.api('DELETE', '/certificates/used')).json, { success: 'Certificate deleted.' });
    assert.deepEqual((await j.api('DELETE', '/certificates/used')).json, { error: "Certificate doesn't exist." });
    assert.ok(!fs.existsSync(path.join(j.statedir, 'certs', 'used')));
  });

  test('#41 names and methods', async () => {
    assert.deepEqual((await j.api('DELETE', '/certificates')).json, { error: 'Invalid certificate name.' });
    assert.deepEqual((await j.api('PUT', '/certificates/site/x', rsa)).json, { error: 'Invalid certificate name.' });
    const post = await j.api('POST', '/certificates/site', rsa);
    assert.equal(post.status, 405);
    assert.deepEqual(post.json, { error: 'Invalid method.' });
  });

  test('bundles survive a restart', async () => {
    await j.stop('SIGTERM');
    await j.run();
    assert.equal((await j.api('GET', '/certificates/site/key')).json, 'RSA (2048 bits)');
  });
});
