/**
 * Unit's JSON dialect (spec/control-api.md §5) and error locations (§2.3).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseJson, serializeJson } from '../../src/config/json.ts';

const B = '{"listeners":{"127.0.0.1:9080":{"pass":"routes"}},"routes":[{"match":{"method":["GET"]},"action":{"return":204}}],"applications":{}}';

function fails(body: string | Buffer): { detail: string; location: { offset: number; line?: number; column?: number } } {
  const r = parseJson(body);
  assert.equal(r.ok, false, `expected a failure for ${JSON.stringify(String(body))}`);
  return r as never;
}

function value(body: string | Buffer): unknown {
  const r = parseJson(body);
  if (!r.ok) assert.fail(`unexpected failure: ${r.detail} at ${JSON.stringify(r.location)}`);
  return r.value;
}

describe('parseJson: conformance rows', () => {
  it('#11 empty body: offset 0, line 1, column 1', () => {
    const e = fails('');
    assert.ok(e.detail.startsWith("An empty JSON payload isn't allowed."));
    assert.deepEqual(e.location, { offset: 0, line: 1, column: 1 });
  });

  it('#12 text after the value: offset 17, line 1, column 18', () => {
    const e = fails('{"listeners":{}} }');
    assert.ok(e.detail.startsWith('Unexpected character after the end of a valid JSON value.'));
    assert.deepEqual(e.location, { offset: 17, line: 1, column: 18 });
  });

  it('#13 duplicate member: located at the second name, offset 16', () => {
    const e = fails('{"listeners":{},"listeners":{}}');
    assert.ok(e.detail.startsWith('Duplicate object member.'));
    assert.equal(e.location.offset, 16);
  });

  it('#14 comments and trailing commas around and inside B', () => {
    const body = `// leading comment
{
  /* listeners */ "listeners": {"127.0.0.1:9080": {"pass": "routes",},},
  "routes": [{"match": {"method": ["GET",]}, "action": {"return": 204}},], // trailing
  "applications": {},
}
/* done */`;
    assert.deepEqual(value(body), JSON.parse(B));
  });

  it('#15 a leading UTF-8 BOM is skipped and offsets count after it', () => {
    assert.deepEqual(value(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(B)])), JSON.parse(B));
    const e = fails(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('[1,,]')]));
    assert.equal(e.location.offset, 3);
  });

  it('#16 leading zeros are refused', () => {
    const e = fails('{"http":{"idle_timeout":007}}');
    assert.equal(e.detail.split('  ')[0] + '  ' + e.detail.split('  ')[1], 'The number is invalid.  Leading zeros are not allowed in JSON numbers.');
    assert.equal(e.location.offset, 24);
  });

  it('#18 2.0 is the integer 2', () => {
    const v = value('{"idle_timeout":2.0}') as { idle_timeout: number };
    assert.equal(v.idle_timeout, 2);
    assert.ok(Number.isInteger(v.idle_timeout));
  });
});

describe('parseJson: detail texts (§5.2)', () => {
  const cases: Array<[string, string, number]> = [
    ['   ', "An empty JSON payload isn't allowed.", 0],
    ['/* only a comment */', "An empty JSON payload isn't allowed.", 0],
    ["'x'", 'A valid JSON value is expected here.', 0],
    ['NaN', 'A valid JSON value is expected here.', 0],
    ['+1', 'A valid JSON value is expected here.', 0],
    ['.5', 'A valid JSON value is expected here.', 0],
    ['tru', 'A valid JSON value is expected here.', 0],
    ['[1x]', 'A valid JSON value is expected here.', 1],
    ['{a:1}', 'A double quote (") is expected here.', 1],
    ['{,}', 'A double quote (") is expected here.', 1],
    ['[,]', 'A valid JSON value is expected here.', 1],
    ['{"a" 1}', 'A colon (:) is expected here.', 5],
    ['{"a":1 "b":2}', 'Either a closing brace (}) or a comma (,) is expected here.', 7],
    ['[1 2]', 'Either a closing bracket (]) or a comma (,) is expected here.', 3],
    ['{"a":1', 'Unexpected end of JSON payload.', 6],
    ['[1,', 'Unexpected end of JSON payload.', 3],
    ['"abc', 'Unexpected end of JSON payload.', 4],
    ['"a\u0001"', 'Unexpected character.', 2],
    ['"a\\x"', 'Unexpected backslash.', 2],
    ['"\\u12"', 'Invalid escape sequence.', 5],
    ['"\\ud800"', 'Invalid JSON encoding sequence.', 1],
    ['"\\udc00\\ud800"', 'Invalid JSON encoding sequence.', 1],
    ['"x\\ud800\\u0041"', 'Invalid JSON encoding sequence.', 2],
    ['01', 'The number is invalid.  Leading zeros are not allowed in JSON numbers.', 0],
    ['00', 'The number is invalid.  Leading zeros are not allowed in JSON numbers.', 0],
    ['1.', 'The number is invalid.', 0],
    ['1.e5', 'The number is invalid.', 0],
    ['1e', 'The number is invalid.', 0],
    ['1e+', 'The number is invalid.', 0],
    ['123456789012345', 'The number is too long.', 0],
    ['1e30', 'The number is out of representable range.', 0],
    ['-9.3e18', 'The number is out of representable range.', 0],
    ['1e-400', 'The number is out of representable range.', 0],
    ['/ 1', 'A valid JSON value is expected here.', 0],
    ['/* open', 'A valid JSON value is expected here.', 0],
    ['[1] /* open', 'Unexpected character after the end of a valid JSON value.', 4],
  ];
  for (const [body, start, offset] of cases) {
    it(`${JSON.stringify(body)} → ${start}`, () => {
      const e = fails(body);
      assert.ok(e.detail.startsWith(start), e.detail);
      assert.equal(e.location.offset, offset);
    });
  }

  it('the syntax of a whole string is checked before its surrogates', () => {
    assert.ok(fails('"\\ud800 \\q"').detail.startsWith('Unexpected backslash.'));
  });
});

describe('parseJson: accepted forms', () => {
  it('numbers within the limits, integer or fraction by value', () => {
    assert.deepEqual(value('[0, -0, 2e1, 1e-1, -01, 12345678901234, 9.2e18, 0.5]'),
      [0, 0, 20, 0.1, -1, 12345678901234, 9.2e18, 0.5]);
    assert.ok(Object.is((value('-0') as number), 0));
  });

  it('literals, escapes and surrogate pairs', () => {
    assert.deepEqual(value('[true,false,null,"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0000"]'),
      [true, false, null, '"\\/\b\f\n\r\t\u00e9\u{1f600}\u0000']);
  });

  it('raw UTF-8 bytes in strings become JS characters', () => {
    assert.equal(value(Buffer.from('"caf\u00e9 \u20ac"', 'utf8')), 'caf\u00e9 \u20ac');
  });

  it('a final // comment without LF is accepted', () => {
    assert.deepEqual(value('{} // x'), {});
  });

  it('objects keep member order; __proto__ is an ordinary member', () => {
    const v = value('{"b":1,"a":2,"__proto__":{"x":1}}') as Record<string, unknown>;
    assert.deepEqual(Object.keys(v), ['b', 'a', '__proto__']);
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.deepEqual(v.__proto__, { x: 1 });
  });

  it('literals need no separator after them (the next check reports)', () => {
    const e = fails('[truex]');
    assert.ok(e.detail.startsWith('Either a closing bracket (]) or a comma (,) is expected here.'));
    assert.equal(e.location.offset, 5);
  });

  it('deep nesting is refused instead of overflowing the stack', () => {
    const e = fails('['.repeat(5000));
    assert.ok(e.detail.startsWith('The JSON value is nested too deeply.'));
  });
});

describe('parseJson: line and column', () => {
  it('counts lines on LF and columns in code points', () => {
    const e = fails('{\n  "a": 1,\n  "\u00e9\u00e9": x\n}');
    assert.deepEqual(e.location, { offset: 22, line: 3, column: 9 });
  });

  it('omits line and column when the line before the error is not UTF-8', () => {
    const body = Buffer.concat([Buffer.from('["'), Buffer.from([0xff]), Buffer.from('" x]')]);
    assert.deepEqual(fails(body).location, { offset: 5 });
  });

  it('invalid bytes on earlier lines do not matter', () => {
    const body = Buffer.concat([Buffer.from('["'), Buffer.from([0xff]), Buffer.from('",\n x]')]);
    assert.deepEqual(fails(body).location, { offset: 7, line: 2, column: 2 });
  });

  it('an error at the end of the body points after the last byte', () => {
    assert.deepEqual(fails('{"a":\n[1,').location, { offset: 9, line: 2, column: 4 });
  });
});

describe('serializeJson', () => {
  it('is compact JSON that parses back to the same value', () => {
    const tree = JSON.parse(B);
    const text = serializeJson(tree);
    assert.equal(text, B);
    assert.deepEqual(value(text), tree);
  });

  it('keeps a __proto__ member', () => {
    assert.equal(serializeJson(value('{"__proto__":1}')), '{"__proto__":1}');
  });
});
