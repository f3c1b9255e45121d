import { test } from 'node:test';
import assert from 'node:assert/strict';
import { printJson, quote } from '../../src/controller/json-print.ts';

test('Unit\'s layout: tabs, CRLF, blank line after filled members that are not last', () => {
  assert.equal(printJson({ a: { b: 1 }, c: [], d: 'x' }), '{\r\n\t"a": {\r\n\t\t"b": 1\r\n\t},\r\n\r\n\t"c": [],\r\n\t"d": "x"\r\n}\r\n');
  assert.equal(printJson('routes'), '"routes"\r\n');
  assert.equal(printJson({}), '{}\r\n');
});

test('string escapes', () => {
  assert.equal(quote('a"b\\c\n\u0001/é'), '"a\\"b\\\\c\\n\\u0001/é"');
});
