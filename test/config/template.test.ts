/**
 * Template syntax (spec/router.md §6.1–6.3, control-api.md §6.0).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DYNAMIC_PREFIXES, dynamicVariable, isTemplate, isVariable, parseTemplate, TemplateError, templateError, VARIABLES,
} from '../../src/config/template.ts';

function refused(s: string): TemplateError {
  try {
    parseTemplate(s);
  } catch (err) {
    assert.ok(err instanceof TemplateError);
    return err;
  }
  assert.fail(`${JSON.stringify(s)} should be refused`);
}

describe('isTemplate', () => {
  it('is true with a $ or a backtick anywhere', () => {
    assert.equal(isTemplate('routes'), false);
    assert.equal(isTemplate(''), false);
    assert.equal(isTemplate('routes$uri'), true);
    assert.equal(isTemplate('$'), true);
    assert.equal(isTemplate('`routes`'), true);
    assert.equal(isTemplate('a`b'), true);
  });
});

describe('parseTemplate: variables', () => {
  it('splits literals and variables', () => {
    assert.deepEqual(parseTemplate('/www$uri'), { js: false, parts: ['/www', { name: 'uri' }] });
    assert.deepEqual(parseTemplate('${host}:$method-x'),
      { js: false, parts: [{ name: 'host' }, ':', { name: 'method' }, '-x'] });
    assert.deepEqual(parseTemplate('plain'), { js: false, parts: ['plain'] });
    assert.deepEqual(parseTemplate(''), { js: false, parts: [] });
  });

  it('names are letters and _ only: $arg_foo1 is $arg_foo and "1"', () => {
    assert.deepEqual(parseTemplate('$arg_foo1'), { js: false, parts: [{ name: 'arg_foo' }, '1'] });
    assert.deepEqual(parseTemplate('$header_X_Forwarded_For'), { js: false, parts: [{ name: 'header_X_Forwarded_For' }] });
  });

  it('knows every fixed variable of §6.2 and the dynamic families', () => {
    for (const name of ['uri', 'request_uri', 'method', 'host', 'remote_addr', 'request_line', 'status',
      'body_bytes_sent', 'request_time', 'time_local', 'request_id', 'dollar', 'header_referer', 'header_user_agent']) {
      assert.ok(VARIABLES.has(name), name);
      assert.deepEqual(parseTemplate(`$${name}`), { js: false, parts: [{ name }] });
    }
    assert.deepEqual([...DYNAMIC_PREFIXES].sort(), ['arg_', 'cookie_', 'header_', 'response_header_']);
    for (const name of ['arg_a', 'header_accept', 'cookie_sid', 'response_header_content_type']) assert.ok(isVariable(name), name);
  });

  it('dynamicVariable() splits the family', () => {
    assert.deepEqual(dynamicVariable('header_accept_encoding'), { prefix: 'header_', key: 'accept_encoding' });
    assert.deepEqual(dynamicVariable('response_header_server'), { prefix: 'response_header_', key: 'server' });
    assert.equal(dynamicVariable('header_referer'), undefined);
    assert.equal(dynamicVariable('uri'), undefined);
  });

  it('unknown names', () => {
    for (const [s, v] of [['$ur', 'ur'], ['$uriblah', 'uriblah'], ['$server_name', 'server_name'], ['routes$nosuch', 'nosuch'],
      ['$arg_', 'arg_'], ['$header_', 'header_'], ['$cookie_', 'cookie_'], ['$response_header_', 'response_header_'], ['${ur}i', 'ur']]) {
      const e = refused(s);
      assert.equal(e.kind, 'unknown');
      assert.equal(e.variable, v);
    }
  });

  it('bad syntax reports the byte position of the $', () => {
    for (const [s, pos] of [['$', 0], ['a$', 1], ['$1', 0], ['a-$-', 2], ['${', 0], ['${}', 0], ['x${uri', 1],
      ['$uri$', 4], ['\u00e9$', 2]] as const) {
      const e = refused(s);
      assert.equal(e.kind, 'invalid', s);
      assert.equal(e.position, pos, s);
    }
  });
});

describe('parseTemplate: JS template literals', () => {
  it('a single literal is JS', () => {
    assert.deepEqual(parseTemplate('`routes/${host}`'), { js: true, source: '`routes/${host}`' });
    assert.deepEqual(parseTemplate('`${uri.split("/")[1] || `x${"}"}`}`'), { js: true, source: '`${uri.split("/")[1] || `x${"}"}`}`' });
  });

  it('an unterminated literal', () => {
    for (const s of ['`', '`a', '`a${`']) assert.equal(refused(s).kind, 'unterminated', s);
  });

  it('more than one literal, or a syntax error inside', () => {
    assert.equal(refused('`a`/`b`').kind, 'syntax');
    assert.equal(refused('`a``').kind, 'syntax');
    const e = refused('`${uri +}`');
    assert.equal(e.kind, 'syntax');
    assert.match(e.message, /^SyntaxError: /);
  });
});

describe('templateError', () => {
  it('uses the validator sentences', () => {
    assert.equal(templateError('pass', refused('routes$nosuch')), 'Unknown variable "nosuch" in the "pass" value.');
    assert.equal(templateError('location', refused('/a$')), 'Invalid variable at position 2 in the "location" value.');
    assert.equal(templateError('share', refused('`x')), 'Unexpected end of template literal in the "share" value.');
    assert.match(templateError('rewrite', refused('`${(}`')), /^SyntaxError: /);
  });
});
