/**
 * An application that answers with fewer body bytes than the Content-Length
 * it announced (WSGI, PHP): the client gets what there is and then the
 * connection closes (RFC 9112 §6.3), rather than a connection that hangs and
 * later carries a 408 inside the unfinished body.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, Junction, freePort, get } from './harness.ts';

/** Send `text` on a new connection; resolve with all bytes received when the server closes it. */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d) => { got += d; });
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write(text);
  });
}

describe('a response body shorter than its Content-Length', () => {
  let j: Junction;
  let port: number;

  before(async () => {
    j = await Junction.start();
    port = await freePort();
    await j.configure({
      listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } },
      routes: [
        { match: { uri: '*.php' }, action: { pass: 'applications/php' } },
        { action: { pass: 'applications/wsgi' } },
      ],
      applications: {
        wsgi: { type: 'python', path: path.join(FIXTURES, 'python'), module: 'wsgi_echo' },
        php: { type: 'php', root: path.join(FIXTURES, 'php', 'www') },
      },
      settings: { http: { idle_timeout: 30 } },
    });
  });
  after(async () => { await j?.cleanup(); });

  for (const [name, uri, next] of [['WSGI', '/short', '/pid'], ['PHP', '/short.php', '/pid.php']]) {
    test(`${name}: the connection closes after the short body; a pipelined request is not answered on it`, { timeout: 15_000 }, async () => {
      const got = await exchange(port, `GET ${uri} HTTP/1.1\r\nHost: x\r\n\r\nGET ${uri} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const head = got.slice(0, got.indexOf('\r\n\r\n'));
      assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(head, /\r\nContent-Length: 10\r\n/i);
      assert.equal(got.slice(got.indexOf('\r\n\r\n') + 4), 'abc');
      // The application goes on serving, on new connections.
      assert.equal((await get(port, next)).status, 200);
    });
  }
});
