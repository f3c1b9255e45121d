import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FileCache, cacheKey, type OpenFile } from '../../src/router/actions/file-cache.ts';
import type { OpenOptions } from '../../src/router/actions/share-open.ts';
import { start, request, one, tmpdir } from './helpers.ts';

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
