/**
 * `~` patterns: PCRE2 meaning on JS RegExp (spec/router.md §3.3, control-api.md §6.5).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compilePcre, RegexError } from '../../src/config/regex.ts';

function matches(pattern: string, yes: string[], no: string[]): void {
  const re = compilePcre(pattern);
  for (const s of yes) assert.equal(re.test(s), true, `${pattern} should match ${JSON.stringify(s)} (${re.source})`);
  for (const s of no) assert.equal(re.test(s), false, `${pattern} should not match ${JSON.stringify(s)} (${re.source})`);
}

function refused(pattern: string): RegexError {
  try {
    compilePcre(pattern);
  } catch (err) {
    assert.ok(err instanceof RegexError, String(err));
    return err;
  }
  assert.fail(`${pattern} should be refused`);
}

describe('compilePcre: meaning', () => {
  it('unanchored search; empty pattern matches everything', () => {
    matches('php', ['/index.php', 'php'], ['/x.py']);
    matches('', ['', 'anything'], []);
  });

  it('^ and $ as in PCRE: $ also before a final newline', () => {
    matches('^/a$', ['/a', '/a\n'], ['/a\n\n', '/ab', 'x/a']);
    matches('\\A/a\\z', ['/a'], ['/a\n']);
    matches('\\A/a\\Z', ['/a', '/a\n'], ['/a\n\n']);
    matches('(?m)^b$', ['a\nb\nc', 'b'], ['ab']);
  });

  it('. excludes only LF unless (?s)', () => {
    matches('a.b', ['a\rb', 'axb'], ['a\nb']);
    matches('(?s)a.b', ['a\nb'], []);
    matches('\\Nb', ['ab'], ['\nb']);
  });

  it('inline options: leading (?i) is the i flag; later ones scope to their group', () => {
    assert.equal(compilePcre('(?i)abc').flags, 'iu');
    matches('(?i)^/API', ['/api', '/Api/x'], ['/x/api']);
    matches('a(?i)b|c', ['ab', 'aB', 'C'], ['Ab']);
    matches('x(?i:y)z', ['xYz'], ['xYZ']);
    matches('(?i)a(?-i)b', ['Ab'], ['AB']);
    matches('(?x) a  b # comment\n c', ['abc'], ['a b c']);
    matches('(?U)a+', ['a'], []);
    assert.equal('aaa'.match(compilePcre('(?U)a+'))?.[0], 'a');
  });

  it('PCRE escapes JS lacks or reads differently', () => {
    matches('\\h', [' ', '\t', '\u00a0'], ['\n', 'x']);
    matches('\\H', ['x'], [' ']);
    matches('^\\v$', ['\n', '\r', '\u2028'], [' ']);
    matches('^\\R$', ['\r\n', '\n'], ['x']);
    matches('\\s', [' ', '\t', '\n', '\v'], ['\u00a0', 'x']);
    matches('^\\S+$', ['\u00a0x'], [' ']);
    matches('\\x41\\x{42}\\101\\o{103}\\cA', ['ABAC\u0001'], []);
    matches('\\Q.*?\\E', ['a.*?b'], ['abc']);
    matches('\\e\\a', ['\u001b\u0007'], []);
    matches('\\p{Lu}\\pL\\p{Greek}', ['AbΩ'], ['abΩ']);
  });

  it('POSIX classes', () => {
    matches('^[[:digit:][:upper:]]+$', ['12AB'], ['12a']);
    matches('^[[:^alpha:]]+$', ['123-'], ['12a']);
    matches('^[[:punct:]]$', ['!', '~'], ['a']);
    matches('^[[:xdigit:]]+$', ['0fA'], ['g']);
  });

  it('classes: ] first is literal, escapes inside, ranges', () => {
    matches('^[]a]+$', [']a'], ['b']);
    matches('^[^]a]$', ['b'], [']', 'a']);
    matches('^[\\w.-]+$', ['a_b.c-d'], ['a b']);
    matches('^[a-c\\d]+$', ['ab1'], ['d']);
    matches('^[\\s]$', [' '], ['\u00a0']);
    matches('^[\\S]$', ['x'], [' ']);
  });

  it('literal braces and brackets that are no quantifier', () => {
    matches('^a{,3}$', ['a{,3}'], ['aaa']);
    matches('^x{2}$', ['xx'], ['x']);
    matches('^{}$', ['{}'], []);
    matches('^a]$', ['a]'], []);
  });

  it('groups and back references', () => {
    matches('^(a)\\1$', ['aa'], ['ab']);
    matches('^(?<y>\\d+)-\\k<y>$', ['12-12'], ['12-13']);
    matches("^(?'y'\\d)(?P<z>\\d)\\k{y}(?P=z)\\g{1}\\g{-1}\\g2$", ['1212122'], ['1212123']);
    matches('^(?:ab)+$', ['abab'], ['aba']);
    matches('(?<=/)x', ['/x'], ['x']);
    matches('a(?!b)', ['ac'], ['ab']);
    matches('^(a)\\10$', ['a\b'], []);
    matches('a(?#comment)b', ['ab'], []);
  });

  it('lazy quantifiers', () => {
    assert.equal('aaa'.match(compilePcre('a+?'))?.[0], 'a');
    assert.equal('aaa'.match(compilePcre('a{1,3}?'))?.[0], 'a');
  });
});

describe('compilePcre: refused patterns', () => {
  const cases: Array<[string, string]> = [
    ['(', 'Invalid regular expression: missing closing parenthesis'],
    [')', 'Invalid regular expression: unmatched closing parenthesis at offset 0'],
    ['a)b', 'Invalid regular expression: unmatched closing parenthesis at offset 1'],
    ['[a', 'Invalid regular expression: missing terminating ] for character class'],
    ['a\\', 'Invalid regular expression: \\ at end of pattern'],
    ['*a', 'Invalid regular expression: quantifier does not follow a repeatable item at offset 0'],
    ['a**', 'Invalid regular expression: quantifier does not follow a repeatable item at offset 2'],
    ['a{3,2}', 'Invalid regular expression: numbers out of order in {} quantifier at offset 5'],
    ['[z-a]', 'Invalid regular expression: range out of order in character class at offset 3'],
    ['\\2(a)', 'Invalid regular expression: reference to non-existent subpattern at offset 1'],
    ['\\i', 'Invalid regular expression: unrecognized character follows \\ at offset 1'],
    ['[[:nope:]]', 'Invalid regular expression: unknown POSIX class name at offset 1'],
    ['(?>a)', 'Invalid regular expression: atomic groups are not supported at offset 0'],
    ['a++', 'Invalid regular expression: possessive quantifiers are not supported at offset 2'],
    ['a?+', 'Invalid regular expression: possessive quantifiers are not supported at offset 2'],
    ['(?R)', 'Invalid regular expression: recursion and subroutine calls are not supported at offset 0'],
    ['(a)(?1)', 'Invalid regular expression: recursion and subroutine calls are not supported at offset 3'],
    ['(?(1)a|b)', 'Invalid regular expression: conditional groups are not supported at offset 0'],
    ['(?|a)', 'Invalid regular expression: branch reset groups are not supported at offset 0'],
    ['a\\Kb', 'Invalid regular expression: \\K is not supported at offset 1'],
    ['(*FAIL)', 'Invalid regular expression: backtracking control verbs and (* options are not supported at offset 0'],
  ];
  for (const [pattern, message] of cases) {
    it(`${JSON.stringify(pattern)}`, () => {
      assert.equal(refused(pattern).message, message);
    });
  }

  it('errors JS finds itself carry its reason without an offset', () => {
    const e = refused('(?<n>a)(?<n>b)');
    assert.match(e.message, /^Invalid regular expression: /);
    assert.equal(e.offset, undefined);
  });
});
