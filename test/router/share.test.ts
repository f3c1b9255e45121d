import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { start, request, one, tmpdir, type Started } from './helpers.ts';

let srv: string;
const mtime = new Date('2024-03-01T12:00:00Z');

before(() => {
  srv = tmpdir();
  fs.mkdirSync(path.join(srv, 'dir'));
  fs.writeFileSync(path.join(srv, 'a.txt'), '0123456789');
  fs.utimesSync(path.join(srv, 'a.txt'), mtime, mtime);
  fs.writeFileSync(path.join(srv, 'index.html'), '<p>index</p>');
  fs.writeFileSync(path.join(srv, 'README'), 'read me');
  fs.writeFileSync(path.join(srv, 'file'), 'x'.repeat(10));
  fs.writeFileSync(path.join(srv, 'empty.txt'), '');
  fs.writeFileSync(path.join(srv, 'dir', 'index.html'), 'dir index');
});
after(() => fs.rmSync(srv, { recursive: true, force: true }));

const etag = `"${(mtime.getTime() / 1000).toString(16)}-a"`;

async function withShare(action: Record<string, unknown>, fn: (s: Started) => Promise<void>, extra: Record<string, unknown> = {}): Promise<void> {
  const s = await start({ routes: [{ action }], ...extra });
  try { await fn(s); } finally { await s.stop(); }
}

test('§14.31 serve a file: headers in Unit order; HEAD identical without body', async () => {
  await withShare({ share: `${srv}$uri` }, async (s) => {
    const r = one(await request(s.port, 'GET', '/a.txt'));
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers.map((h) => h[0]), ['Last-Modified', 'ETag', 'Content-Type', 'Server', 'Date', 'Content-Length', 'Connection']);
    assert.equal(r.get('last-modified'), 'Fri, 01 Mar 2024 12:00:00 GMT');
    assert.equal(r.get('etag'), etag);
    assert.equal(r.get('content-type'), 'text/plain');
    assert.equal(r.get('content-length'), '10');
    assert.equal(r.body, '0123456789');
    const h = await request(s.port, 'HEAD', '/a.txt');
    const hr = one(h, true);
    assert.deepEqual(hr.headers.filter((x) => x[0] !== 'Date'), r.headers.filter((x) => x[0] !== 'Date'));
    assert.ok(h.endsWith('\r\n\r\n'));
    const e = one(await request(s.port, 'GET', '/empty.txt'));
    assert.equal(e.get('content-length'), '0');
  });
});

test('§14.30 directory without slash → 301 keeping the query', async () => {
  await withShare({ share: `${srv}$uri` }, async (s) => {
    const r = one(await request(s.port, 'GET', '/dir?x=1'));
    assert.equal(r.status, 301);
    assert.equal(r.get('location'), '/dir/?x=1');
    assert.equal(r.get('content-length'), '0');
    assert.equal(r.get('content-type'), undefined);
    const d = one(await request(s.port, 'GET', '/dir/'));
    assert.equal(d.body, 'dir index');
    assert.equal(d.get('content-type'), 'text/html');
  });
});

test('§14.32 non-GET → 405, or the fallback', async () => {
  await withShare({ share: `${srv}$uri` }, async (s) => {
    assert.equal(one(await request(s.port, 'POST', '/a.txt')).status, 405);
  });
  await withShare({ share: `${srv}$uri`, fallback: { return: 204 } }, async (s) => {
    assert.equal(one(await request(s.port, 'POST', '/a.txt')).status, 204);
    assert.equal(one(await request(s.port, 'GET', '/missing')).status, 204);
  });
});

test('§14.33 types filter → 403; missing file → 404', async () => {
  await withShare({ share: `${srv}$uri`, types: ['image/*'] }, async (s) => {
    assert.equal(one(await request(s.port, 'GET', '/a.txt')).status, 403);
    assert.equal(one(await request(s.port, 'GET', '/missing.png')).status, 404);
  });
});

test('§14.34 share arrays, index, custom MIME types', async () => {
  await withShare({ share: ['/nonexistent-junction$uri', `${srv}$uri`] }, async (s) => {
    assert.equal(one(await request(s.port, 'GET', '/a.txt')).body, '0123456789');
    assert.equal(one(await request(s.port, 'GET', '/')).body, '<p>index</p>');
  });
  await withShare({ share: `${srv}$uri`, index: 'README' }, async (s) => {
    const r = one(await request(s.port, 'GET', '/'));
    assert.equal(r.body, 'read me');
    assert.equal(r.get('content-type'), undefined);
  });
  await withShare({ share: `${srv}$uri`, index: 'README' }, async (s) => {
    assert.equal(one(await request(s.port, 'GET', '/')).get('content-type'), 'text/x-readme');
  }, { settings: { http: { static: { mime_types: { 'text/x-readme': 'README' } } } } });
});

test('§14.28 response_headers on a share, not on its 404', async () => {
  await withShare({ share: `${srv}$uri`, response_headers: { 'X-Foo': '$uri', ETag: null } }, async (s) => {
    const r = one(await request(s.port, 'GET', '/file'));
    assert.equal(r.status, 200);
    assert.equal(r.get('x-foo'), '/file');
    assert.equal(r.get('etag'), undefined);
    const m = one(await request(s.port, 'GET', '/nofile'));
    assert.equal(m.status, 404);
    assert.equal(m.get('x-foo'), undefined);
  });
});

test('conditional requests: 304 and 412', async () => {
  await withShare({ share: `${srv}$uri` }, async (s) => {
    const nm = one(await request(s.port, 'GET', '/a.txt', [`If-None-Match: ${etag}`]));
    assert.equal(nm.status, 304);
    assert.equal(nm.get('etag'), etag);
    assert.equal(nm.get('content-length'), undefined);
    assert.equal(nm.body, '');
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-None-Match: "x", W/' + etag])).status, 304);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-None-Match: "other"'])).status, 200);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-Modified-Since: Fri, 01 Mar 2024 12:00:00 GMT'])).status, 304);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-Modified-Since: Fri, 01 Mar 2024 11:59:59 GMT'])).status, 200);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-Match: "nope"'])).status, 412);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', [`If-Match: ${etag}`])).status, 200);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['If-Unmodified-Since: Thu, 29 Feb 2024 00:00:00 GMT'])).status, 412);
  });
});

test('byte ranges: 206, multipart, 416, If-Range', async () => {
  await withShare({ share: `${srv}$uri` }, async (s) => {
    const r = one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=2-4']));
    assert.equal(r.statusLine, 'HTTP/1.1 206 Partial Content');
    assert.equal(r.get('content-range'), 'bytes 2-4/10');
    assert.equal(r.body, '234');
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=-3'])).body, '789');
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=7-'])).body, '789');
    const bad = one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=10-']));
    assert.equal(bad.status, 416);
    assert.equal(bad.get('content-range'), 'bytes */10');
    const m = one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=0-0,8-9']));
    assert.equal(m.status, 206);
    const b = /boundary=(\w+)/.exec(m.get('content-type')!)![1];
    assert.equal(m.body, `\r\n--${b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/10\r\n\r\n0` +
      `\r\n--${b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--${b}--\r\n`);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=2-4', 'If-Range: "old"'])).status, 200);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['Range: bytes=2-4', `If-Range: ${etag}`])).status, 206);
    assert.equal(one(await request(s.port, 'GET', '/a.txt', ['Range: chars=1-2'])).status, 200);
  });
});

test('precompressed siblings with Vary', async () => {
  const dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'p.js'), 'console.log(1)');
  fs.writeFileSync(path.join(dir, 'p.js.gz'), zlib.gzipSync('console.log(1)'));
  try {
    await withShare({ share: `${dir}$uri` }, async (s) => {
      const g = one(await request(s.port, 'GET', '/p.js', ['Accept-Encoding: gzip, deflate']));
      assert.equal(g.get('content-encoding'), 'gzip');
      assert.equal(g.get('vary'), 'Accept-Encoding');
      assert.equal(g.get('content-type'), 'application/javascript');
      assert.equal(zlib.gunzipSync(Buffer.from(g.body, 'latin1')).toString(), 'console.log(1)');
      const p = one(await request(s.port, 'GET', '/p.js'));
      assert.equal(p.body, 'console.log(1)');
      assert.equal(p.get('content-encoding'), undefined);
      const q0 = one(await request(s.port, 'GET', '/p.js', ['Accept-Encoding: gzip;q=0']));
      assert.equal(q0.get('content-encoding'), undefined);
    });
  } finally { fs.rmSync(dir, { recursive: true, force: true }); }
});

test('share options: chroot, follow_symlinks, traverse_mounts', async () => {
  const dir = tmpdir();
  const outside = tmpdir();
  fs.writeFileSync(path.join(outside, 'secret'), 'secret');
  fs.mkdirSync(path.join(dir, 'www'));
  fs.writeFileSync(path.join(dir, 'www', 'ok'), 'ok');
  fs.symlinkSync(path.join(outside, 'secret'), path.join(dir, 'www', 'abs-link'));
  fs.symlinkSync('../../' + path.basename(outside) + '/secret', path.join(dir, 'www', 'rel-link'));
  fs.symlinkSync('ok', path.join(dir, 'www', 'inner-link'));
  try {
    await withShare({ share: `${dir}/www$uri`, chroot: `${dir}/www` }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/ok')).body, 'ok');
      assert.equal(one(await request(s.port, 'GET', '/abs-link')).status, 404);  // re-rooted inside the chroot
      assert.equal(one(await request(s.port, 'GET', '/rel-link')).status, 404);  // `..` clamps at the chroot
      assert.equal(one(await request(s.port, 'GET', '/inner-link')).body, 'ok');
    });
    await withShare({ share: `${dir}/www$uri`, chroot: `${dir}/other` }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/ok')).status, 403);
    });
    await withShare({ share: `${dir}/www$uri`, follow_symlinks: false }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/ok')).body, 'ok');
      assert.equal(one(await request(s.port, 'GET', '/inner-link')).status, 403);
      assert.equal(one(await request(s.port, 'GET', '/abs-link')).status, 403);
    });
    await withShare({ share: `${dir}/www$uri` }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/abs-link')).body, 'secret');
    });
    await withShare({ share: '/proc/self/$arg_f', traverse_mounts: false }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/?f=status')).status, 403);
    });
    await withShare({ share: `${dir}/www$uri`, traverse_mounts: false }, async (s) => {
      assert.equal(one(await request(s.port, 'GET', '/ok')).body, 'ok');
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('encoded traversal cannot leave the share', async () => {
  await withShare({ share: `${srv}/dir$uri` }, async (s) => {
    assert.equal(one(await request(s.port, 'GET', '/%2e%2e/a.txt')).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/..%2fa.txt')).status, 400);
    assert.equal(one(await request(s.port, 'GET', '/x/%2E%2E/index.html')).body, 'dir index');
  });
});
