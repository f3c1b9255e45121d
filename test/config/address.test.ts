/**
 * Socket addresses and address patterns (spec/control-api.md §1.2, §6.2, §6.4;
 * router.md §3.5, §4.4).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AddressPatternError, compileAddressPatterns, parseListenerName, parseProxyAddress, type PeerAddress,
} from '../../src/config/address.ts';

const v4 = (address: string, port = 80): PeerAddress => ({ family: 'IPv4', address, port });
const v6 = (address: string, port = 80): PeerAddress => ({ family: 'IPv6', address, port });
const unix: PeerAddress = { family: 'unix', address: '', port: 0 };

describe('parseListenerName', () => {
  it('accepts the address forms of §1.2', () => {
    assert.deepEqual(parseListenerName('*:8080'), { kind: 'tcp', host: '0.0.0.0', port: 8080, family: 4, wildcard: true });
    assert.deepEqual(parseListenerName('127.0.0.1:80'), { kind: 'tcp', host: '127.0.0.1', port: 80, family: 4, wildcard: false });
    assert.deepEqual(parseListenerName('[::1]:443'), { kind: 'tcp', host: '::1', port: 443, family: 6, wildcard: false });
    assert.deepEqual(parseListenerName('[::]:443'), { kind: 'tcp', host: '::', port: 443, family: 6, wildcard: true });
    assert.deepEqual(parseListenerName('[2001:DB8:0::1]:1'), { kind: 'tcp', host: '2001:db8::1', port: 1, family: 6, wildcard: false });
    assert.deepEqual(parseListenerName('[::ffff:10.0.0.1]:65535')?.kind, 'tcp');
    assert.deepEqual(parseListenerName('unix:/run/app.sock'), { kind: 'unix', path: '/run/app.sock', abstract: false });
    assert.deepEqual(parseListenerName('unix:@ctl'), { kind: 'unix', path: 'ctl', abstract: true });
  });

  it('refuses what Unit refuses (§6.2 examples and more)', () => {
    for (const name of ['127.0.0.1', '9082', 'localhost:80', '*:0', '*:65536', 'unix:', 'unix:@', '*:', ':80',
      '1.2.3:80', '1.2.3.4.5:80', '256.0.0.1:80', '[::1]', '[::1]:0', '::1:80', '[fe80::1%eth0]:80', '*:8o',
      '[zz::]:80', 'unix:/' + 'a'.repeat(107), '*:-1', '*:+80']) {
      assert.equal(parseListenerName(name), null, name);
    }
  });
});

describe('parseProxyAddress', () => {
  it('http:// + socket address', () => {
    assert.deepEqual(parseProxyAddress('http://127.0.0.1:8000')?.kind, 'tcp');
    assert.deepEqual(parseProxyAddress('http://[::1]:8000'), { kind: 'tcp', host: '::1', port: 8000, family: 6, wildcard: false });
    assert.deepEqual(parseProxyAddress('http://unix:/tmp/s.sock'), { kind: 'unix', path: '/tmp/s.sock', abstract: false });
    for (const bad of ['https://127.0.0.1:80', 'http://localhost:80', 'http://127.0.0.1', '127.0.0.1:80', 'http://']) {
      assert.equal(parseProxyAddress(bad), null, bad);
    }
  });
});

function refused(value: string | unknown[]): string {
  try {
    compileAddressPatterns(value);
  } catch (err) {
    assert.ok(err instanceof AddressPatternError);
    return err.message;
  }
  assert.fail(`${JSON.stringify(value)} should be refused`);
}

describe('compileAddressPatterns', () => {
  it('IPv4 exact, range, CIDR, ports', () => {
    const m = compileAddressPatterns('10.0.0.1');
    assert.equal(m(v4('10.0.0.1')), true);
    assert.equal(m(v4('10.0.0.2')), false);
    const r = compileAddressPatterns('10.0.0.10-10.0.0.20');
    assert.equal(r(v4('10.0.0.10')), true);
    assert.equal(r(v4('10.0.0.20')), true);
    assert.equal(r(v4('10.0.0.21')), false);
    const c = compileAddressPatterns('192.168.1.77/24');
    assert.equal(c(v4('192.168.1.0')), true);
    assert.equal(c(v4('192.168.1.255')), true);
    assert.equal(c(v4('192.168.2.1')), false);
    assert.equal(compileAddressPatterns('0.0.0.0/0')(v4('8.8.8.8')), true);
    assert.equal(compileAddressPatterns('0.0.0.0/0')(v6('::1')), false);
    assert.equal(compileAddressPatterns('8.8.8.8/32')(v4('8.8.8.8')), true);
    const p = compileAddressPatterns('127.0.0.1:8000-8090');
    assert.equal(p(v4('127.0.0.1', 8000)), true);
    assert.equal(p(v4('127.0.0.1', 8091)), false);
    assert.equal(compileAddressPatterns('10.0.0.0/8:443')(v4('10.1.2.3', 443)), true);
  });

  it('IPv6 forms, with brackets to add a port; families never mix', () => {
    assert.equal(compileAddressPatterns('::1')(v6('::1')), true);
    assert.equal(compileAddressPatterns('::1')(v6('0:0::1')), true);
    assert.equal(compileAddressPatterns('2001:db8::-2001:db8::ff')(v6('2001:db8::80')), true);
    assert.equal(compileAddressPatterns('2001:db8::-2001:db8::ff')(v6('2001:db8::100')), false);
    assert.equal(compileAddressPatterns('2001:db8::/32')(v6('2001:db8:ffff::1')), true);
    assert.equal(compileAddressPatterns('2001:db8::/32')(v6('2001:db9::1')), false);
    const p = compileAddressPatterns('[2001:db8::/32]:8000-8090');
    assert.equal(p(v6('2001:db8::1', 8080)), true);
    assert.equal(p(v6('2001:db8::1', 80)), false);
    assert.equal(compileAddressPatterns('127.0.0.1')(v6('::ffff:127.0.0.1')), false);
    assert.equal(compileAddressPatterns('::ffff:127.0.0.1')(v4('127.0.0.1')), false);
    assert.equal(compileAddressPatterns('fe80::1')(v6('fe80::1%eth0')), true);
  });

  it('*:port matches both IP families, never UNIX', () => {
    const m = compileAddressPatterns('*:80-81');
    assert.equal(m(v4('1.2.3.4', 81)), true);
    assert.equal(m(v6('::1', 80)), true);
    assert.equal(m(v4('1.2.3.4', 82)), false);
    assert.equal(m(unix), false);
  });

  it('unix matches UNIX peers only', () => {
    assert.equal(compileAddressPatterns('unix')(unix), true);
    assert.equal(compileAddressPatterns('unix')(v4('1.2.3.4')), false);
    assert.equal(compileAddressPatterns('10.0.0.0/8')(unix), false);
    assert.equal(compileAddressPatterns('!unix')(v4('1.2.3.4')), true);
  });

  it('array semantics: negatives exclude, then any positive; only negatives ⇒ the rest', () => {
    const m = compileAddressPatterns(['10.0.0.0/8', '!10.0.0.1']);
    assert.equal(m(v4('10.0.0.2')), true);
    assert.equal(m(v4('10.0.0.1')), false);
    assert.equal(m(v4('11.0.0.1')), false);
    const neg = compileAddressPatterns(['!10.0.0.1', '!unix']);
    assert.equal(neg(v4('10.0.0.2')), true);
    assert.equal(neg(v4('10.0.0.1')), false);
    assert.equal(neg(unix), false);
    assert.equal(compileAddressPatterns('!127.0.0.1')(v4('127.0.0.2')), true);
  });

  it('an empty array matches nothing', () => {
    const m = compileAddressPatterns([]);
    assert.equal(m(v4('127.0.0.1')), false);
    assert.equal(m(unix), false);
  });

  it('bad patterns carry the validator messages', () => {
    assert.equal(refused(''), 'The "address" is too short.');
    assert.equal(refused('*'), 'The "address" is too short.');
    assert.equal(refused('!'), 'The "address" is too short.');
    assert.equal(refused('*:'), 'The "address" format is invalid.');
    assert.equal(refused('localhost'), 'The "address" format is invalid.');
    assert.equal(refused('1.2.3.4:'), 'The "address" format is invalid.');
    assert.equal(refused('1.2.3.256'), 'The "address" format is invalid.');
    assert.equal(refused('::g'), 'The "address" format is invalid.');
    assert.equal(refused('[::1]'), 'The "address" format is invalid.');
    assert.equal(refused('10.0.0.2-10.0.0.1'), 'The "address" range is overlapping.');
    assert.equal(refused('::2-::1'), 'The "address" range is overlapping.');
    assert.equal(refused('10.0.0.0/33'), 'The "address" has an invalid CIDR prefix.');
    assert.equal(refused('::/129'), 'The "address" has an invalid CIDR prefix.');
    assert.equal(refused('10.0.0.0/x'), 'The "address" has an invalid CIDR prefix.');
    assert.equal(refused('*:65536'), 'The "address" port an invalid port.');
    assert.equal(refused('*:90-80'), 'The "address" port an invalid port.');
    assert.equal(refused('*:80-'), 'The "address" port an invalid port.');
    assert.equal(refused('1.2.3.4:x'), 'The "address" port an invalid port.');
    assert.equal(refused(['10.0.0.1', 5]), 'The "match" pattern for "address" must be a string.');
  });
});
