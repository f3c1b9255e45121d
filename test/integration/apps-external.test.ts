/**
 * Any program as an `external` application through the real daemon
 * (docs/external-apps.md): a Python stdlib server on the inherited socket
 * (fd 3, LISTEN_FDS/LISTEN_PID), the client's address in `Junction-Client`,
 * arguments, working directory and environment, and a clean exit on SIGTERM.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, Junction, freePort, request, waitFor } from './harness.ts';
import { ONE_ROUTER, appPids, getWith, gone, json } from './apps-helpers.ts';

const DIR = path.join(FIXTURES, 'external');

describe('external applications in other languages', () => {
  let j: Junction;
  let port: number;

  before(async () => {
    j = await Junction.start();
    port = await freePort();
    await j.configure({
      listeners: { [`127.0.0.1:${port}`]: { pass: 'applications/py' } },
      applications: {
        py: {
          type: 'external', working_directory: DIR, executable: 'app.py', arguments: ['--one', 'two'],
          environment: { GREETING: 'hi' }, processes: 2,
        },
      },
      settings: ONE_ROUTER,
    });
  });

  after(async () => { await j.cleanup(); });

  test('serves on fd 3 with LISTEN_FDS/LISTEN_PID; arguments, directory, environment', async () => {
    const info = await json(port, '/x?y=1');
    assert.equal(info.path, '/x?y=1');
    assert.deepEqual(info.argv, ['--one', 'two']);
    assert.equal(info.cwd, DIR);
    assert.deepEqual(info.env, { LISTEN_FDS: '1', LISTEN_PID: String(info.pid), GREETING: 'hi' });
    assert.equal(appPids(j, 'app.py').length, 2);
  });

  test('the client\'s address comes in Junction-Client; a client\'s own copy is dropped', async () => {
    const s = net.connect(port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    const clientPort = s.localPort;
    s.write('GET /who HTTP/1.1\r\nHost: x\r\nJunction-Client: 203.0.113.9 1 10.0.0.1 80 https\r\nConnection: close\r\n\r\n');
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    await new Promise((r) => s.once('end', r));
    const text = Buffer.concat(chunks).toString();
    const info = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(info.client, ['127.0.0.1', clientPort, 'http']);
  });

  test('responses keep repeated fields; bodies pass both ways; Server is Unit\'s', async () => {
    const r = await getWith(port, '/');
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers.server, 'Unit/1.35.0');
    const body = 'x'.repeat(100_000);
    const post = await request({ host: '127.0.0.1', port, method: 'POST', path: '/echo', body });
    assert.equal(post.body, body);
  });

  test('SIGTERM: the program exits, its exit is logged, and it is replaced', async () => {
    const pids = appPids(j, 'app.py');
    process.kill(pids[0], 'SIGTERM');
    await gone(pids[0]);
    // Exit code 0 from its handler; or signal 15 when the process (a replacement
    // started by an earlier test) had not installed the handler yet.
    const exit = new RegExp(`app process ${pids[0]} exited (with code 0|on signal 15)`);
    await waitFor(() => exit.test(j.logText()), 'the exit logged');
    await waitFor(() => appPids(j, 'app.py').length === 2, 'a replacement');
    assert.equal((await getWith(port, '/')).status, 200);
  });
});
