/**
 * JS modules: the njs-style ES module rewrite and the upload check
 * (spec/control-api.md §10, router.md §6.3).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { checkJsModule, wrapJsModule } from '../../src/config/js-module.ts';

/** Copy a value of another realm into this one (deepEqual compares prototypes). */
const here = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

/** Evaluate a wrapped module with `deps` as importable modules; returns its default export. */
function run(src: string, deps: Record<string, unknown> = {}): unknown {
  const fn = vm.runInNewContext(wrapJsModule('m', src).code) as (imp: (n: string) => unknown) => unknown;
  return fn((n) => deps[n]);
}

describe('wrapJsModule', () => {
  it('returns the default export of expressions, objects and declarations', () => {
    assert.equal(run('export default 42;'), 42);
    assert.deepEqual(here(run('var http = {a: 1};\nexport default http\n')), { a: 1 });
    assert.equal((run('export default function hello(x) { return "hi " + x }\nhello(1);') as (x: string) => string)('you'), 'hi you');
    assert.equal((run('export default class K { static v = 3 }') as { v: number }).v, 3);
    assert.equal((run('export default function () { return 7 }') as () => number)(), 7);
    assert.equal(run('const v = 1;'), undefined);
  });

  it('default imports of other modules', () => {
    const w = wrapJsModule('m', 'import util from "util";\nimport other from \'other\'\nexport default util.x + other;');
    assert.deepEqual(w.imports, ['util', 'other']);
    assert.equal(run('import util from "util";\nimport other from \'other\'\nexport default util.x + other;', { util: { x: 1 }, other: 2 }), 3);
  });

  it('is not fooled by strings, comments, regular expressions and templates', () => {
    const src = [
      '// export default "comment"',
      '/* import x from "y" */',
      'const s = "export default 1" + \'import a from "b"\';',
      'const re = /export default [}]/g, half = 10 / 2 / 1;',
      'const t = `a ${ {k: `b ${"}"}`}.k } export default`;',
      'const o = { export: 1, import: 2 }; o.export;',
      'export default { s, re: re.source, half, t, o };',
    ].join('\n');
    assert.deepEqual(here(run(src)), {
      s: 'export default 1import a from "b"', re: 'export default [}]', half: 5, t: 'a b } export default',
      o: { export: 1, import: 2 },
    });
  });

  it('keeps line numbers for compiler messages', () => {
    assert.equal(checkJsModule('m', 'import a from "a";\nvar x = 1;\nvar y = ;\nexport default x;'), 'SyntaxError: Unexpected token \';\' in m:3');
    assert.equal(checkJsModule('m', 'var x = 1;\n}\nexport default x;'), 'SyntaxError: Unexpected token \'}\' in m:2');
  });

  it('refuses what njs does not support', () => {
    assert.equal(checkJsModule('m', 'import { a } from "x";\nexport default a;'), 'SyntaxError: Non-default import is not supported in m:1');
    assert.equal(checkJsModule('m', 'import * as a from "x";'), 'SyntaxError: Non-default import is not supported in m:1');
    assert.equal(checkJsModule('m', '\nexport const a = 1;'), 'SyntaxError: Non-default export is not supported in m:2');
    assert.equal(checkJsModule('m', 'export default 1;\nexport default 2;'), 'SyntaxError: Duplicate export of \'default\' in m:2');
    assert.equal(checkJsModule('m', 'var s = "open;\nexport default s;'), 'SyntaxError: Unterminated string in m:1');
    assert.equal(checkJsModule('m', 'export default 1;'), null);
    assert.equal(checkJsModule('m', ''), null);
  });
});
