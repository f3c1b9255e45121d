/**
 * Python WSGI through the launcher and the app protocol, with the real spawn
 * function behind the manager: the environ of spec/applications.md §4.2,
 * bodies both ways, error semantics, a real Flask app.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { FIXTURES, harness, request, json, waitFor, type Harness } from './helpers.ts';

const PY = join(FIXTURES, 'python');
let h: Harness;

before(async () => {
  h = await harness();
  await h.apply({
    echo: { type: 'python', path: PY, module: 'wsgi_echo', working_directory: PY },
    prefixed: { type: 'python 3', path: [PY], module: 'wsgi_echo', prefix: '/api/' },
    rooted: { type: 'python3.11', path: PY, module: 'wsgi_echo', prefix: '/' },
    flask: { type: 'python', path: PY, module: 'flask_app', callable: 'app' },
    factory: { type: 'python', path: PY, targets: { first: { module: 'wsgi_factory', callable: 'create', factory: true }, second: { module: 'wsgi_factory', callable: 'second', prefix: '/two' } } },
    threaded: { type: 'python', path: PY, module: 'wsgi_echo', threads: 4, thread_stack_size: 262144 },
    forced: { type: 'python', path: PY, module: 'asgi_variants', callable: 'wsgi_one_arg', protocol: 'wsgi' },
    crashy: { type: 'python', path: PY, module: 'wsgi_echo', processes: 1 },
    timed: { type: 'python', path: PY, module: 'wsgi_echo', limits: { timeout: 1 } },
  }, (req) => {
    const m = /^\/_(\w+)(?:\.(\w+))?(\/.*)?$/.exec(req.url ?? '');
    if (m) {
      req.url = m[3] ?? '/';
      return { app: m[1], target: m[2] };
    }
    return { app: 'echo' };
  });
});

after(async () => { await h.close(); });

/** Send `text` as is (the front server sees exactly these bytes); the JSON body of the answer. */
function raw(port: number, text: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => {
      const all = Buffer.concat(parts).toString('latin1');
      let body = all.slice(all.indexOf('\r\n\r\n') + 4);
      if (/transfer-encoding: chunked/i.test(all)) {
        let out = '';
        for (;;) {
          const nl = body.indexOf('\r\n');
          const n = parseInt(body.slice(0, nl), 16);
          if (!n) break;
          out += body.slice(nl + 2, nl + 2 + n);
          body = body.slice(nl + 4 + n);
        }
        body = out;
      }
      resolve(JSON.parse(body));
    });
    s.on('error', reject);
    s.write(text); // not end(): a half-closed client aborts its requests in node:http
  });
}

test('environ: request line, server fields, no SCRIPT_NAME without prefix (§9 check 3)', async () => {
  const body = await raw(h.front.port, 'GET /a%20b/./c?x=1 HTTP/1.1\r\nHost: Example.COM.:8080\r\nConnection: close\r\n\r\n');
  assert.equal(body.PATH_INFO, '/a b/c');
  assert.equal(body.REQUEST_URI, '/a%20b/./c?x=1');
  assert.equal(body.QUERY_STRING, 'x=1');
  assert.equal(body.SERVER_NAME, 'example.com');
  assert.equal(body.SERVER_PORT, String(h.front.port));
  assert.equal(body.SERVER_ADDR, '127.0.0.1');
  assert.equal(body.REMOTE_ADDR, '127.0.0.1');
  assert.equal(body.SERVER_PROTOCOL, 'HTTP/1.1');
  assert.equal(body.SERVER_SOFTWARE, 'Unit/1.35.0');
  assert.equal(body.REQUEST_METHOD, 'GET');
  assert.equal(body.HTTP_HOST, 'Example.COM.:8080');
  assert.ok(!('SCRIPT_NAME' in body));
  assert.deepEqual(body['wsgi.version'], [1, 0]);
  assert.equal(body['wsgi.url_scheme'], 'http');
  assert.equal(body['wsgi.multithread'], false);
  assert.equal(body['wsgi.multiprocess'], true);
  assert.equal(body['wsgi.run_once'], false);
  assert.equal(body['wsgi.errors'], true);
  assert.equal(body['wsgi.input'], 'Input');
  for (const k of ['CONTENT_LENGTH', 'CONTENT_TYPE', 'REMOTE_PORT', 'HTTPS', 'wsgi.file_wrapper', 'wsgi.input_terminated']) assert.ok(!(k in body), k);
});

test('repeated fields are joined with ", " (§9 check 4); /? and / give QUERY_STRING "" (check 7)', async () => {
  const body = await raw(h.front.port, 'GET /? HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\nConnection: close\r\n\r\n');
  assert.equal(body.HTTP_X_A, '1, 2, 3');
  assert.equal(body.QUERY_STRING, '');
  const plain = await json(`${h.front.url}/`);
  assert.equal(plain.QUERY_STRING, '');
  // PEP 3333: the decoded bytes of the path as a Latin-1 string.
  const utf8 = await json(`${h.front.url}/caf%C3%A9`);
  assert.equal(utf8.PATH_INFO, '/caf\xc3\xa9');
  assert.equal(utf8.REQUEST_URI, '/caf%C3%A9');
});

test('POST body: CONTENT_* copies, read() then read(100) (§9 check 5)', async () => {
  const env = await json(`${h.front.url}/`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'hello' });
  assert.equal(env.CONTENT_TYPE, 'text/plain');
  assert.equal(env.CONTENT_LENGTH, '5');
  assert.equal(env.HTTP_CONTENT_LENGTH, '5');
  assert.equal(env.HTTP_CONTENT_TYPE, 'text/plain');
  const r = await request(`${h.front.url}/body`, { method: 'POST', body: 'hello' });
  assert.equal(r.text, 'hello');
  assert.equal(r.headers['x-more'], "b''");
});

test('prefix: SCRIPT_NAME/PATH_INFO split only at a boundary; "/" means none (§9 check 6)', async () => {
  const api = await json(`${h.front.url}/_prefixed/api`);
  assert.equal(api.SCRIPT_NAME, '/api');
  assert.equal(api.PATH_INFO, '');
  const x = await json(`${h.front.url}/_prefixed/api/x`);
  assert.equal(x.SCRIPT_NAME, '/api');
  assert.equal(x.PATH_INFO, '/x');
  const apix = await json(`${h.front.url}/_prefixed/apix`);
  assert.ok(!('SCRIPT_NAME' in apix));
  assert.equal(apix.PATH_INFO, '/apix');
  const root = await json(`${h.front.url}/_rooted/anything`);
  assert.ok(!('SCRIPT_NAME' in root));
});

test('an exception before start_response gives 503 and logs the traceback and Unit\'s line (§9 check 8)', async () => {
  const r = await request(`${h.front.url}/raise`);
  assert.equal(r.status, 503);
  assert.match(r.text, /Error 503/);
  await waitFor(() => /\[error\] \d+#\d+ \[unit\] #\d+: Python failed to call the application\n/.test(h.rec.text()), 5000, 'error line');
  assert.match(h.rec.text(), /RuntimeError: boom before start_response/);
});

test('an exception after the first chunk truncates the response and closes the connection (§9 check 9)', async () => {
  const r = await request(`${h.front.url}/raise-after`);
  assert.equal(r.status, 200);
  assert.equal(r.text, 'x');
  assert.equal(r.complete, false);
});

test('[] without start_response → 200 text/plain, empty (§9 check 10)', async () => {
  const r = await request(`${h.front.url}/empty`);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/plain');
  assert.equal(r.body.length, 0);
});

test('a str item → 503 and "not a bytestring object"; a non-iterable → 503 (§9 check 11)', async () => {
  assert.equal((await request(`${h.front.url}/str`)).status, 503);
  await waitFor(() => h.rec.text().includes('the application returned not a bytestring object'), 5000);
  assert.equal((await request(`${h.front.url}/not-iterable`)).status, 503);
  await waitFor(() => h.rec.text().includes('the application returned not an iterable object'), 5000);
});

test('response fields: repeats kept, Server dropped, Latin-1, status from the code', async () => {
  const r = await request(`${h.front.url}/cookies`);
  assert.equal(r.status, 201);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers.server, undefined);
  assert.equal(r.rawHeaders[r.rawHeaders.indexOf('X-Latin') + 1], 'caf\xe9');
  const s = await request(`${h.front.url}/status-field`);
  assert.equal(s.status, 299);
});

test('Content-Length: writing past it is an error ("content length N exceeded"); write() and the iterable both reach the client; close() is called', async () => {
  const r = await request(`${h.front.url}/length`);
  assert.equal(r.status, 200);
  assert.equal(r.text, 'ab');
  assert.equal(r.complete, false);
  await waitFor(() => /\[error\] \d+#\d+ \[unit\] #\d+: content length 3 exceeded\n/.test(h.rec.text()), 5000, 'exceeded line');
  // write() past it raises RuntimeError in the application.
  assert.equal((await request(`${h.front.url}/write-too-much`)).text, 'Ru');
  assert.equal((await request(`${h.front.url}/write`)).text, 'written;returned');
  const before = Number((await request(`${h.front.url}/closed-count`)).text);
  await request(`${h.front.url}/close`);
  assert.equal(Number((await request(`${h.front.url}/closed-count`)).text), before + 1);
});

test('wsgi.input: readline, readline(n), readline(0), readlines, iteration, argument errors', async () => {
  const lines = await json(`${h.front.url}/lines`, { method: 'POST', body: 'one\ntwo\nthree\nfour' });
  assert.deepEqual(lines, ['one\n', 'tw', '', 'o\n', 'three\n', 'four']);
  const it = await json(`${h.front.url}/iter-lines`, { method: 'POST', body: 'a\nb\n' });
  assert.deepEqual(it, ['a\n', 'b\n']);
  const errs = await json(`${h.front.url}/input-errors`, { method: 'POST', body: 'x' });
  assert.deepEqual(errs, ['TypeError', 'TypeError', 'TypeError', 'ValueError']);
});

test('large bodies stream both ways (beyond the flow-control window)', async () => {
  const size = 5 * 1024 * 1024 + 17;
  const up = await request(`${h.front.url}/body-size`, { method: 'POST', body: Buffer.alloc(size, 0x61) });
  assert.equal(up.text, String(size));
  const chunked = await request(`${h.front.url}/body-size`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' }, body: Buffer.alloc(300_000, 0x62) });
  assert.equal(chunked.text, '300000');
  const down = await request(`${h.front.url}/big?${size}`);
  assert.equal(down.status, 200);
  assert.equal(down.body.length, size);
  assert.equal(down.headers['content-length'], String(size));
  const echo = await request(`${h.front.url}/body`, { method: 'POST', body: Buffer.alloc(3 * 1024 * 1024, 0x63) });
  assert.equal(echo.body.length, 3 * 1024 * 1024);
});

test('a generator streams its chunks', async () => {
  const r = await request(`${h.front.url}/stream`);
  assert.equal(r.text, 'chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n');
  assert.equal(r.headers['transfer-encoding'], 'chunked');
});

test('a real Flask app runs unmodified', async () => {
  const hello = await request(`${h.front.url}/_flask/`);
  assert.equal(hello.status, 200);
  assert.equal(hello.text, 'Hello from Flask');
  const posted = await json(`${h.front.url}/_flask/json`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ a: [1, 2] }) });
  assert.deepEqual(posted, { received: { a: [1, 2] }, method: 'POST', path: '/json', script_root: '', remote: '127.0.0.1' });
  const utf8 = await request(`${h.front.url}/_flask/user/caf%C3%A9`);
  assert.equal(JSON.parse(utf8.body.toString('utf8')).name, 'café');
  const user = await request(`${h.front.url}/_flask/user/ann?x=1`);
  assert.deepEqual(JSON.parse(user.text), { name: 'ann', args: { x: '1' } });
  assert.match(String(user.headers['set-cookie']), /^seen=1; Path=\//);
  assert.equal((await request(`${h.front.url}/_flask/missing`)).status, 404);
});

test('targets: factory callables, per-target prefix, first target by default', async () => {
  assert.equal((await request(`${h.front.url}/_factory/`)).text, 'from factory');
  assert.equal((await request(`${h.front.url}/_factory.first/`)).text, 'from factory');
  assert.equal((await request(`${h.front.url}/_factory.second/two/x`)).text, 'second target /two /x');
  assert.equal(h.manager.target('factory', 'nope'), undefined);
});

test('environment, working directory and the Junction variables the app must not see', async () => {
  const env = await json(`${h.front.url}/env?JUNCTION_PYTHON_OPTIONS,LISTEN_FDS,LISTEN_PID,JUNCTION_READY_FD,NODE_OPTIONS,PATH`);
  assert.equal(env.JUNCTION_PYTHON_OPTIONS, null);
  assert.equal(env.LISTEN_FDS, null);
  assert.equal(env.LISTEN_PID, null);
  assert.equal(env.JUNCTION_READY_FD, null);
  assert.equal(env.NODE_OPTIONS, process.env.NODE_OPTIONS ?? null);
  assert.equal(env.PATH, process.env.PATH);
});

test('wsgi.errors is raw text in the log; close() runs after a failed iteration ("Python failed to iterate …")', async () => {
  assert.equal((await request(`${h.front.url}/errors`)).text, 'written');
  await waitFor(() => h.rec.text().includes('\nraw text on wsgi.errors\n') || h.rec.text().startsWith('raw text on wsgi.errors\n'), 5000, 'raw text');
  const before = Number((await request(`${h.front.url}/closed-count`)).text);
  const r = await request(`${h.front.url}/close-after-error`);
  assert.equal(r.text, 'part');
  assert.equal(r.complete, false);
  await waitFor(() => /\[error\] \d+#\d+ \[unit\] #\d+: Python failed to iterate over the application response object\n/.test(h.rec.text()), 5000);
  assert.match(h.rec.text(), /RuntimeError: iteration failed/);
  assert.equal(Number((await request(`${h.front.url}/closed-count`)).text), before + 1);
});

test('start_response: a second call before the head went out replaces the response; a bad header list → 503', async () => {
  const r = await request(`${h.front.url}/replace`);
  assert.equal(r.status, 202);
  assert.equal(r.headers['x-second'], '2');
  assert.equal(r.headers['x-first'], undefined);
  assert.equal((await request(`${h.front.url}/bad-headers`)).status, 503);
  await waitFor(() => h.rec.text().includes('TypeError: the response headers must be a list of tuples'), 5000);
});

test('Latin-1: field values and body bytes as received, REQUEST_URI raw', async () => {
  const body = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0xff]);
  const r = await new Promise<any>((resolve, reject) => {
    const s = net.connect(h.front.port, '127.0.0.1');
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => {
      const all = Buffer.concat(parts);
      resolve(JSON.parse(all.subarray(all.indexOf('\r\n\r\n') + 4).toString('latin1')));
    });
    s.on('error', reject);
    s.write(Buffer.concat([Buffer.from('POST /latin1-body?%41 HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nContent-Length: 5\r\nConnection: close\r\n\r\n', 'latin1'), body]));
  });
  assert.deepEqual(r, { raw: 'caf\xe9\xff', uri: '/latin1-body?%41', path: '/latin1-body', x: 'caf\xe9' });
});

test('threads: a pool per process, requests run at the same time, wsgi.multithread; thread_stack_size applies', async () => {
  const env = await json(`${h.front.url}/_threaded/`);
  assert.equal(env['wsgi.multithread'], true);
  const together = await Promise.all([1, 2, 3, 4].map(() => request(`${h.front.url}/_threaded/barrier?4`)));
  for (const t of together) assert.match(t.text, /^together \d+$/);
  assert.equal(new Set(together.map((t) => t.text)).size, 4);
  assert.equal((await request(`${h.front.url}/_threaded/stack`)).text, '262144');
  // Bodies beyond the window both ways, several at once, through the reader thread.
  const size = 3 * 1024 * 1024 + 1;
  const results = await Promise.all([1, 2, 3].map(() => Promise.all([
    request(`${h.front.url}/_threaded/body-size`, { method: 'POST', body: Buffer.alloc(size, 0x61) }),
    request(`${h.front.url}/_threaded/big?${size}`),
  ])));
  for (const [up, down] of results) {
    assert.equal(up.text, String(size));
    assert.equal(down.body.length, size);
  }
});

test('protocol "wsgi" forces WSGI on a callable Unit would take for ASGI 2', async () => {
  assert.equal((await request(`${h.front.url}/_forced/`)).text, 'wsgi forced');
});

test('pipelining: many concurrent requests on one single-threaded process, each gets its own answer', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 40 });
  try {
    const paths = Array.from({ length: 400 }, (_, i) => `/n${i}?q=${i}`);
    const results = await Promise.all(paths.map((p) => request(`${h.front.url}${p}`, { agent }).then((r) => JSON.parse(r.text))));
    results.forEach((env, i) => {
      assert.equal(env.PATH_INFO, `/n${i}`);
      assert.equal(env.QUERY_STRING, `q=${i}`);
    });
  } finally {
    agent.destroy();
  }
});

test('a queued request whose client left is not run', async () => {
  // The first request occupies the only thread; the second waits in the process's queue and is abandoned.
  const slow = request(`${h.front.url}/sleep?0.5`);
  await new Promise<void>((resolve) => {
    const req = http.get(`${h.front.url}/record?abandoned`, () => {});
    req.on('error', () => resolve());
    req.on('socket', (s) => s.on('connect', () => setImmediate(() => req.destroy())));
  });
  assert.equal((await slow).status, 200);
  assert.equal((await request(`${h.front.url}/record?kept`)).text, 'recorded');
  assert.deepEqual(JSON.parse((await request(`${h.front.url}/records`)).text), ['kept']);
});

test('wsgi.input used outside of its request raises RuntimeError', async () => {
  assert.equal((await request(`${h.front.url}/keep-input`, { method: 'POST', body: 'x' })).text, 'kept');
  assert.deepEqual(JSON.parse((await request(`${h.front.url}/stale-input`)).text), ['RuntimeError', 'RuntimeError', 'RuntimeError', 'RuntimeError']);
});

test('limits.timeout: requests are not queued at the process, the timer starts when the thread takes one', async () => {
  const [a, b] = await Promise.all([request(`${h.front.url}/_timed/sleep?0.7`), request(`${h.front.url}/_timed/sleep?0.7`)]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(a.text, b.text);
});

test('a process that dies: its running request gets 503, the requests queued behind it go to a replacement', async () => {
  const before = (await request(`${h.front.url}/_crashy/pid`)).text;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  try {
    const exit = request(`${h.front.url}/_crashy/exit`, { agent });
    const queued = Array.from({ length: 5 }, () => request(`${h.front.url}/_crashy/pid`, { agent }));
    assert.equal((await exit).status, 503);
    for (const r of await Promise.all(queued)) assert.equal(r.status, 200);
    assert.notEqual((await request(`${h.front.url}/_crashy/pid`)).text, before);
  } finally {
    agent.destroy();
  }
});
