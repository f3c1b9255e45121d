import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileCache, cacheKey, type OpenFile } from '../../src/router/actions/file-cache.ts';
import type { OpenOptions } from '../../src/router/actions/share-open.ts';
import { start, request, one, tmpdir, waitLines } from './helpers.ts';

const PLAIN: OpenOptions = { chroot: null, followSymlinks: true, traverseMounts: true };

/** The next turn of the event loop (requests of one turn share one fstat of a file). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Content of an open file, from memory or from its descriptor. */
function contentOf(f: OpenFile): string {
  if (f.content !== null) return f.content.toString();
  const b = Buffer.alloc(f.size);
  fs.readSync(f.fd, b, 0, f.size, 0);
  return b.toString();
}

test('file cache: a hit revalidates with fstat; changed, replaced and removed files are not served from it', async () => {
  const dir = tmpdir();
  const file = path.join(dir, 'a.txt');
  fs.writeFileSync(file, 'first');
  // Content kept at once (no settling time), so that the memory copy is what is checked.
  const cache = new FileCache({ settleMs: 0 });
  try {
    const a = await cache.open(file, PLAIN);
    assert.equal(a.status, 0);
    assert.equal(contentOf(a.file!), 'first');
    assert.equal(a.file!.content?.toString(), 'first');
    a.file!.release();
    const hit = cache.hit(cacheKey(file, PLAIN));
    assert.ok(hit !== undefined && hit === a.file);
    hit.release();

    // Written in place (another size): the next hit sees it.
    fs.writeFileSync(file, 'second!');
    await turn();
    assert.equal(cache.hit(cacheKey(file, PLAIN)), undefined);
    const b = await cache.open(file, PLAIN);
    assert.equal(contentOf(b.file!), 'second!');
    b.file!.release();

    // Replaced by a rename: the cached inode has no link any more.
    fs.writeFileSync(path.join(dir, 'new'), 'third');
    fs.renameSync(path.join(dir, 'new'), file);
    await turn();
    assert.equal(cache.hit(cacheKey(file, PLAIN)), undefined);
    const c = await cache.open(file, PLAIN);
    assert.equal(contentOf(c.file!), 'third');
    c.file!.release();

    // Removed: a miss, and the path answers 404.
    fs.rmSync(file);
    await turn();
    assert.equal(cache.hit(cacheKey(file, PLAIN)), undefined);
    assert.equal((await cache.open(file, PLAIN)).status, 404);
    assert.equal(cache.stats.files, 0);
  } finally {
    cache.clear();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('file cache: bounded in files and bytes; a file in use stays open after it leaves', async () => {
  const dir = tmpdir();
  for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(dir, `f${i}`), 'x'.repeat(100));
  const cache = new FileCache({ settleMs: 0, maxEntries: 3, contentBudget: 250 });
  try {
    const first = await cache.open(path.join(dir, 'f0'), PLAIN);
    for (let i = 1; i < 5; i++) (await cache.open(path.join(dir, `f${i}`), PLAIN)).file!.release();
    const s = cache.stats;
    assert.ok(s.files <= 3, `${s.files} files`);
    assert.ok(s.contentBytes <= 250, `${s.contentBytes} bytes`);
    // f0 was evicted while acquired: still readable until released.
    assert.equal(cache.hit(cacheKey(path.join(dir, 'f0'), PLAIN)), undefined);
    assert.equal(contentOf(first.file!), 'x'.repeat(100));
    assert.equal(fs.fstatSync(first.file!.fd).size, 100);
    first.file!.release();
  } finally {
    cache.clear();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('share: a file written again, replaced or removed is answered as it is now', async () => {
  const dir = tmpdir();
  const file = path.join(dir, 'f.txt');
  fs.writeFileSync(file, 'aaaa');
  const s = await start({ routes: [{ action: { share: `${dir}$uri` } }] });
  try {
    assert.equal(one(await request(s.port, 'GET', '/f.txt')).body, 'aaaa');
    assert.equal(one(await request(s.port, 'GET', '/f.txt')).body, 'aaaa');
    fs.writeFileSync(file, 'bbbb');
    assert.equal(one(await request(s.port, 'GET', '/f.txt')).body, 'bbbb');
    fs.writeFileSync(path.join(dir, 'tmp'), 'replaced');
    fs.renameSync(path.join(dir, 'tmp'), file);
    const r = one(await request(s.port, 'GET', '/f.txt'));
    assert.equal(r.body, 'replaced');
    assert.equal(r.get('content-length'), '8');
    fs.rmSync(file);
    assert.equal(one(await request(s.port, 'GET', '/f.txt')).status, 404);
  } finally { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
});

test('file cache: a path naming another file (its directory renamed) is resolved again after the window', async () => {
  const dir = tmpdir();
  const www = path.join(dir, 'www');
  fs.mkdirSync(www);
  const file = path.join(www, 'a.txt');
  fs.writeFileSync(file, 'old');
  const cache = new FileCache({ settleMs: 0, revalidateMs: 5 });
  try {
    (await cache.open(file, PLAIN)).file!.release();
    fs.renameSync(www, path.join(dir, 'www.old'));
    fs.mkdirSync(www);
    fs.writeFileSync(file, 'new');
    // The open file is unchanged: until the path is resolved again, it still answers.
    let seen = '';
    while (seen !== 'new') {
      await turn();
      const f = cache.hit(cacheKey(file, PLAIN)) ?? (await cache.open(file, PLAIN)).file!;
      seen = contentOf(f);
      f.release();
      assert.ok(seen === 'old' || seen === 'new', seen);
    }
  } finally {
    cache.clear();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('share: files kept in memory answer as from the disk (ranges, conditions, HEAD, access log)', async () => {
  const { fileCache } = await import('../../src/router/actions/file-cache.ts');
  const dir = tmpdir();
  const log = path.join(dir, 'access.log');
  fs.writeFileSync(path.join(dir, 'f.txt'), '0123456789'.repeat(100));
  fileCache.configure({ settleMs: 0 });
  const s = await start({ routes: [{ action: { share: `${dir}$uri`, response_headers: { 'X-A': '1' } } }],
    access_log: { path: log, format: '$status $body_bytes_sent' } });
  try {
    const first = one(await request(s.port, 'GET', '/f.txt'));
    const again = one(await request(s.port, 'GET', '/f.txt'));
    for (const r of [first, again]) {
      assert.equal(r.status, 200);
      assert.equal(r.body, '0123456789'.repeat(100));
      assert.equal(r.get('content-length'), '1000');
      assert.equal(r.get('x-a'), '1');
    }
    const range = one(await request(s.port, 'GET', '/f.txt', ['Range: bytes=5-14']));
    assert.equal(range.status, 206);
    assert.equal(range.body, '5678901234');
    assert.equal(one(await request(s.port, 'GET', '/f.txt', [`If-None-Match: ${first.get('etag')}`])).status, 304);
    const head = await request(s.port, 'HEAD', '/f.txt');
    assert.equal(one(head, true).get('content-length'), '1000');
    assert.ok(head.endsWith('\r\n\r\n'));
    const lines = await waitLines(log, 5);
    assert.deepEqual(lines, ['200 1000', '200 1000', '206 10', '304 0', '200 0']);
  } finally {
    await s.stop();
    fileCache.configure({});
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
