/**
 * The request head the HTTP transport writes for an application
 * (src/apps/transport/http.ts): the client's fields minus hop-by-hop ones,
 * Host when missing, and `Junction-Client` last — never a client's copy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AppRequest } from '../../src/apps/types.ts';
import { clientValue, requestHead, responseFields } from '../../src/apps/transport/http.ts';

function req(rawHeaders: string[], extra: Partial<AppRequest> = {}): AppRequest {
  return {
    req: { method: 'POST' }, res: undefined, target: '/a%20b?x=1', path: '/a b', query: 'x=1',
    remoteAddr: '198.51.100.7', remotePort: 4711, localAddr: '127.0.0.1', localPort: '8080',
    serverName: 'example.com', tls: false, rawHeaders, fail() {}, ...extra,
  } as unknown as AppRequest;
}

test('request head: raw target, fields in order, hop-by-hop and Connection-named ones out, Junction-Client last', () => {
  const { head, hasBody } = requestHead(req([
    'X-Early', '1', 'Host', 'example.com', 'Connection', 'keep-alive, X-Early, X-Late', 'Keep-Alive', 'timeout=5',
    'TE', 'trailers', 'Junction-Client', '6.6.6.6 1 - 0 https', 'Content-Length', '3', 'X-Late', '2', 'X-Kept', 'yes',
  ]));
  assert.equal(head, 'POST /a%20b?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nX-Kept: yes\r\n' +
    'Junction-Client: 198.51.100.7 4711 127.0.0.1 8080 http\r\n\r\n');
  assert.equal(hasBody, true);
});

test('request head: Host supplied for HTTP/1.0 clients; no body without a length', () => {
  const { head, hasBody } = requestHead(req(['Content-Length', '0'], { tls: true }));
  assert.match(head, /\r\nHost: example\.com\r\n/);
  assert.match(head, /Junction-Client: 198\.51\.100\.7 4711 127\.0\.0\.1 8080 https\r\n\r\n$/);
  assert.equal(hasBody, false);
});

test('Junction-Client: spaces and % in addresses are escaped; unknown values are -', () => {
  assert.equal(clientValue({ remoteAddr: 'unix:', remotePort: 0, localAddr: 'unix:/run/a b%.sock', localPort: '', tls: false }),
    'unix: 0 unix:/run/a%20b%25.sock 0 http');
  assert.equal(clientValue({ remoteAddr: '', localAddr: '', localPort: '', tls: false }), '- 0 - 0 http');
});

test('response fields: router-owned ones dropped, the rest in order; the same array when nothing is dropped', () => {
  const plain = ['Content-Type', 'text/plain', 'Set-Cookie', 'a', 'Set-Cookie', 'b'];
  assert.equal(responseFields(plain), plain);
  assert.deepEqual(responseFields(['Keep-Alive', 'timeout=5', 'Set-Cookie', 'a', 'Upgrade', 'x', 'X', '1']), ['Set-Cookie', 'a', 'X', '1']);
});
