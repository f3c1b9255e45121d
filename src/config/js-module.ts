/**
 * JavaScript modules uploaded through `/js_modules` (control-api.md §10,
 * router.md §6.3), shared by the controller (upload check) and the router
 * (evaluation).
 *
 * A module is JavaScript source in the njs dialect of ES modules: one
 * `export default …` and any number of `import NAME from "module"` (default
 * imports of other uploaded modules). Node can only compile ES modules in a
 * vm context behind an experimental flag, so a module is rewritten into a
 * strict-mode function of one parameter (the importer) that returns the
 * default export. The rewrite keeps every line where it was, so compiler
 * messages point at the uploaded text.
 */
import vm from 'node:vm';

/** Name of the importer parameter and of the default-export binding in wrapped modules. */
const IMPORT = '__junction_import__';
const DEFAULT = '__junction_default__';

/** A module that cannot be used; `message` is the detail for `Invalid JS module.`. */
export class JsModuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsModuleError';
  }
}

/** A rewritten module. */
export interface WrappedModule {
  /** A function expression `(function (importer) { … return defaultExport; })`. */
  code: string;
  /** Modules named by `import … from "name"`, in source order. */
  imports: string[];
}

/** Keywords after which a `/` starts a regular expression literal. */
const REGEX_AFTER_WORDS = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void',
  'throw', 'case', 'do', 'else', 'yield', 'await']);

const isIdentStart = (c: string): boolean => /[A-Za-z_$\u0080-\uffff]/.test(c);
const isIdentPart = (c: string): boolean => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);

function lineOf(src: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (src.charCodeAt(i) === 10) n++;
  return n;
}

/** The line breaks of `s` (what replaced text must keep so that later lines keep their numbers). */
const breaks = (s: string): string => s.replace(/[^\n]/g, '');

/**
 * Rewrite an njs-style ES module (see the module comment).
 * @throws JsModuleError for `import`/`export` forms njs does not support
 *   (named or namespace imports, named exports, a second default export) or
 *   text the scanner cannot follow (unterminated string, comment or template).
 */
export function wrapJsModule(name: string, src: string): WrappedModule {
  const imports: string[] = [];
  let out = '';
  let copied = 0;
  let depth = 0;
  /** Brace depths at which a `${` of a template literal was opened. */
  const templates: number[] = [];
  let prev = '';            // last significant token: a punctuator char, 'word:<w>', 'value'
  let defaultExports = 0;
  let trailer = '';
  let i = 0;
  const n = src.length;
  const fail = (msg: string, at: number): never => {
    throw new JsModuleError(`SyntaxError: ${msg} in ${name}:${lineOf(src, at)}`);
  };
  const skipSpace = (j: number): number => {
    for (;;) {
      while (j < n && /\s/.test(src[j])) j++;
      if (src.startsWith('//', j)) { while (j < n && src[j] !== '\n') j++; continue; }
      if (src.startsWith('/*', j)) {
        const e = src.indexOf('*/', j + 2);
        if (e < 0) fail('Unterminated comment', j);
        j = e + 2;
        continue;
      }
      return j;
    }
  };
  const word = (j: number): string => {
    let e = j;
    while (e < n && isIdentPart(src[e])) e++;
    return src.slice(j, e);
  };
  const stringEnd = (j: number): number => {
    const q = src[j];
    let k = j + 1;
    while (k < n && src[k] !== q) {
      if (src[k] === '\n') fail('Unterminated string', j);
      k += src[k] === '\\' ? 2 : 1;
    }
    if (k >= n) fail('Unterminated string', j);
    return k + 1;
  };
  /** Scan template characters from `j` (inside a literal) to its end or a `${`. */
  const templateRun = (j: number): number => {
    while (j < n) {
      const c = src[j];
      if (c === '\\') { j += 2; continue; }
      if (c === '`') return j + 1;
      if (c === '$' && src[j + 1] === '{') {
        templates.push(depth);
        depth++;
        return j + 2;
      }
      j++;
    }
    return fail('Unterminated template literal', j);
  };
  const replace = (from: number, to: number, text: string): void => {
    out += src.slice(copied, from) + text;
    copied = to;
  };

  while (i < n) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '/' && (src[i + 1] === '/' || src[i + 1] === '*')) { i = skipSpace(i); continue; }
    if (c === '"' || c === '\'') { i = stringEnd(i); prev = 'value'; continue; }
    if (c === '`') { i = templateRun(i + 1); prev = 'value'; continue; }
    if (c === '/') {
      const regex = prev === '' || (prev.length === 1 && prev !== ')' && prev !== ']')
        || (prev.startsWith('word:') && REGEX_AFTER_WORDS.has(prev.slice(5)));
      if (regex) {
        let k = i + 1;
        let cls = false;
        while (k < n && (cls || src[k] !== '/')) {
          if (src[k] === '\n') fail('Unterminated regular expression', i);
          if (src[k] === '\\') k++;
          else if (src[k] === '[') cls = true;
          else if (src[k] === ']') cls = false;
          k++;
        }
        if (k >= n) fail('Unterminated regular expression', i);
        k++;
        while (k < n && isIdentPart(src[k])) k++;
        i = k;
        prev = 'value';
        continue;
      }
      i++;
      prev = '/';
      continue;
    }
    if (c === '{' || c === '(' || c === '[') { depth++; i++; prev = c; continue; }
    if (c === '}' || c === ')' || c === ']') {
      if (--depth < 0) fail(`Unexpected token '${c}'`, i);
      i++;
      if (c === '}' && templates.length && templates[templates.length - 1] === depth) {
        templates.pop();
        i = templateRun(i);
        prev = 'value';
        continue;
      }
      prev = c;
      continue;
    }
    if (isIdentStart(c)) {
      const w = word(i);
      const start = i;
      i += w.length;
      const afterDot = prev === '.';
      if (depth === 0 && !afterDot && (w === 'import' || w === 'export')) {
        const j = skipSpace(i);
        if (w === 'import' && (src[j] === '(' || src[j] === '.')) { prev = `word:${w}`; continue; }
        if (w === 'import') {
          const local = word(j);
          if (local === '' || !isIdentStart(local[0])) fail('Non-default import is not supported', start);
          let k = skipSpace(j + local.length);
          if (word(k) !== 'from') fail('Non-default import is not supported', start);
          k = skipSpace(k + 4);
          if (src[k] !== '"' && src[k] !== '\'') fail('Unexpected token in import statement', k);
          const e = stringEnd(k);
          const module = src.slice(k + 1, e - 1);
          if (module.includes('\\')) fail('Escapes are not supported in module names', k);
          imports.push(module);
          let end = e;
          const semi = skipSpace(e);
          if (src[semi] === ';') end = semi + 1;
          // Line breaks of the statement are kept so that later lines keep their numbers.
          replace(start, end, `const ${local} = ${IMPORT}(${JSON.stringify(module)});` + breaks(src.slice(start, end)));
          i = end;
          prev = ';';
          continue;
        }
        // export
        if (word(j) !== 'default') fail('Non-default export is not supported', start);
        if (++defaultExports > 1) fail('Duplicate export of \'default\'', start);
        const k = skipSpace(j + 7);
        let decl = word(k);
        let nameAt = k + decl.length;
        if (decl === 'async') {
          const f = skipSpace(nameAt);
          if (word(f) === 'function') { decl = 'function'; nameAt = f + 8; }
        }
        if (decl === 'function' || decl === 'class') {
          let m = skipSpace(nameAt);
          if (src[m] === '*') m = skipSpace(m + 1);
          const declared = word(m);
          if (declared !== '' && isIdentStart(declared[0])) {
            // A named declaration stays a declaration (hoisting, local name); it is returned at the end.
            replace(start, j + 7, breaks(src.slice(start, j + 7)));
            trailer = `\n${DEFAULT} = ${declared};`;
            i = j + 7;
            prev = ';';
            continue;
          }
        }
        replace(start, j + 7, `${DEFAULT} =` + breaks(src.slice(start, j + 7)));
        i = j + 7;
        prev = '=';
        continue;
      }
      prev = `word:${w}`;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      i++;
      while (i < n && /[0-9A-Za-z_.]/.test(src[i])) i++;
      prev = 'value';
      continue;
    }
    prev = c;
    i++;
  }
  if (templates.length) fail('Unterminated template literal', n);
  out += src.slice(copied);
  const code = `(function (${IMPORT}) { "use strict"; let ${DEFAULT}; ${out}\n;${trailer}\nreturn ${DEFAULT}; })`;
  return { code, imports };
}

/**
 * The `detail` for a compiler error of module `name`: the message and where it is,
 * e.g. `SyntaxError: Unexpected token '}' in http:5`.
 */
export function compileErrorDetail(name: string, e: Error): string {
  const first = /^(.*):(\d+)\n/.exec(e.stack ?? '');
  const where = first !== null && first[1] === name ? ` in ${name}:${first[2]}` : '';
  return `${e.name}: ${e.message}${where}`;
}

/**
 * Check that an uploaded module compiles (nothing is run).
 * @returns null when it does, else the `detail` of a 400 `Invalid JS module.` answer.
 */
export function checkJsModule(name: string, source: string): string | null {
  try {
    const w = wrapJsModule(name, source);
    new vm.Script(w.code, { filename: name });
    return null;
  } catch (e) {
    if (e instanceof JsModuleError) return e.message;
    return compileErrorDetail(name, e as Error);
  }
}
