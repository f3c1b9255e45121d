/**
 * Request bodies reaching PHP over FastCGI: forms, raw bodies, uploads,
 * chunked bodies, and a client leaving in the middle of one.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { PhpServer, WWW, tempDir, waitFor } from './php-harness.ts';

interface Post {
  method: string;
  post: Record<string, unknown>;
  files: Record<string, { name: string; type: string; size: number; error: number; md5: string | null; uploaded: boolean }>;
  input_length: number;
  input_md5: string;
  content_length: string | null;
  http_content_length: string | null;
  content_type: string | null;
  transfer_encoding: string | null;
}

let tmp: string;
let php: PhpServer;

before(async () => {
  tmp = tempDir();
  php = await new PhpServer({
    type: 'php', root: WWW,
    options: { admin: { upload_max_filesize: '16M', post_max_size: '32M' } },
  }, tmp).start();
});

after(async () => {
  await php?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const md5 = (b: Buffer | string) => crypto.createHash('md5').update(b).digest('hex');

test('urlencoded form → $_POST', async () => {
  const body = 'name=J%C3%BCrgen&list%5B%5D=1&list%5B%5D=2&empty=';
  const r = await php.json<Post>('/post.php', {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body,
  });
  assert.equal(r.method, 'POST');
  assert.deepEqual(r.post, { name: 'Jürgen', list: ['1', '2'], empty: '' });
  assert.equal(r.content_length, String(Buffer.byteLength(body)));
  assert.equal(r.content_type, 'application/x-www-form-urlencoded');
});

test('raw body → php://input, streamed in pieces', async () => {
  const body = crypto.randomBytes(300_000);
  const r = await php.json<Post>('/post.php', { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body });
  assert.equal(r.method, 'PUT');
  assert.equal(r.input_length, body.length);
  assert.equal(r.input_md5, md5(body));
  assert.deepEqual(r.post, []);
});

test('multipart upload → $_FILES and $_POST', async () => {
  const file = crypto.randomBytes(1_500_000);
  const form = new FormData();
  form.append('title', 'a photo');
  form.append('photo', new Blob([file], { type: 'image/png' }), 'cat.png');
  form.append('note', new Blob(['hello\n'], { type: 'text/plain' }), 'note.txt');
  const res = await fetch(`http://127.0.0.1:${php.port}/post.php`, { method: 'POST', body: form });
  assert.equal(res.status, 200);
  const r = await res.json() as Post;
  assert.deepEqual(r.post, { title: 'a photo' });
  assert.equal(r.files.photo.name, 'cat.png');
  assert.equal(r.files.photo.type, 'image/png');
  assert.equal(r.files.photo.size, file.length);
  assert.equal(r.files.photo.error, 0);
  assert.equal(r.files.photo.md5, md5(file));
  assert.equal(r.files.photo.uploaded, true);
  assert.equal(r.files.note.md5, md5('hello\n'));
  assert.match(r.content_type ?? '', /^multipart\/form-data; boundary=/);
});

test('a chunked body is read whole and given a Content-Length', async () => {
  const parts = [Buffer.from('a=1&'), Buffer.from('b=2&'), Buffer.from('c=3')];
  const r = await php.request('/post.php', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Transfer-Encoding': 'chunked' },
    chunks: parts,
  });
  assert.equal(r.status, 200);
  const p = JSON.parse(r.text) as Post;
  assert.deepEqual(p.post, { a: '1', b: '2', c: '3' });
  assert.equal(p.content_length, '11');
  assert.equal(p.http_content_length, '11');
  assert.equal(p.transfer_encoding, null);
});

test('a body PHP does not read leaves the connection usable', async () => {
  const before = php.process!.connection.requests;
  for (let i = 0; i < 3; i++) {
    const r = await php.request('/pid.php', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: 'x'.repeat(200_000) });
    assert.equal(r.status, 200);
    assert.equal(r.text, String(php.process!.pid));
  }
  assert.equal(php.process!.connection.requests, before + 3);
  assert.equal(php.pids.length, 1);
});

test('the client leaving mid-body drops that connection; the process serves on', async () => {
  const pid = php.process!.pid;
  await new Promise<void>((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port: php.port, path: '/post.php', method: 'POST', agent: false,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': 1_000_000 },
    });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.write(Buffer.alloc(10_000), () => setImmediate(() => req.destroy()));
  });
  // The next requests get the same process, over a new connection.
  const r = await waitFor(async () => {
    const x = await php.request('/pid.php');
    return x.status === 200 ? x : undefined;
  }, 'a served request');
  assert.equal(r.text, String(pid));
  assert.equal(php.process!.pid, pid);
  assert.equal(php.host.exits.has(pid), false);
});
