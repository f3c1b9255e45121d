/**
 * Compiled `match` patterns (spec/router.md §3.3, §3.4): wildcard or regex
 * strings with optional negation, pattern arrays, and the object forms used by
 * `arguments`, `headers` and `cookies`. Everything is compiled when a
 * configuration is applied; matching allocates nothing but case-folded copies.
 */
import { compilePcre } from '../config/regex.ts';
import { decodeComponent, toByteString } from './uri.ts';

/** How pattern text is prepared before matching. */
export interface PatternOptions {
  /** Fold case: patterns and values compared lowercased ('lower') or uppercased ('upper'). */
  fold?: 'lower' | 'upper';
  /** Decode `%HH` in wildcard text (uri, query, arguments), with `+` → space when 'plus'. */
  decode?: 'pct' | 'plus';
}

interface Matcher {
  /** `value` as received, `folded` after the set's case folding (same string when none). */
  test(value: string, folded: string): boolean;
}

/** Exact text or `*` wildcards: prefix, ordered middle pieces, suffix. */
class WildcardMatcher implements Matcher {
  readonly prefix: string;
  readonly suffix: string;
  readonly middle: string[];
  readonly exact: boolean;
  readonly minLength: number;

  constructor(pieces: string[]) {
    this.exact = pieces.length === 1;
    this.prefix = pieces[0];
    this.suffix = this.exact ? '' : pieces[pieces.length - 1];
    this.middle = pieces.slice(1, -1).filter((p) => p.length > 0);
    this.minLength = pieces.reduce((n, p) => n + p.length, 0);
  }

  test(_value: string, v: string): boolean {
    if (this.exact) return v === this.prefix;
    if (v.length < this.minLength || !v.startsWith(this.prefix) || !v.endsWith(this.suffix)) return false;
    let pos = this.prefix.length;
    const end = v.length - this.suffix.length;
    for (let i = 0; i < this.middle.length; i++) {
      const m = this.middle[i];
      const at = v.indexOf(m, pos);
      if (at < 0 || at + m.length > end) return false;
      pos = at + m.length;
    }
    return true;
  }
}

/** `~REGEX`: unanchored search on the value as received (never case-folded). */
class RegexMatcher implements Matcher {
  readonly re: RegExp;
  constructor(re: RegExp) { this.re = re; }
  test(value: string): boolean {
    this.re.lastIndex = 0;
    return this.re.test(value);
  }
}

/**
 * A pattern or array of patterns: matches when no negative pattern matches and
 * either there are no positive patterns or one of them matches.
 */
export class PatternSet {
  readonly positive: Matcher[] = [];
  readonly negative: Matcher[] = [];
  readonly fold: 'lower' | 'upper' | undefined;

  constructor(fold: 'lower' | 'upper' | undefined) { this.fold = fold; }

  test(value: string): boolean {
    const folded = this.fold === 'lower' ? value.toLowerCase() : this.fold === 'upper' ? value.toUpperCase() : value;
    for (let i = 0; i < this.negative.length; i++) {
      if (this.negative[i].test(value, folded)) return false;
    }
    if (this.positive.length === 0) return true;
    for (let i = 0; i < this.positive.length; i++) {
      if (this.positive[i].test(value, folded)) return true;
    }
    return false;
  }
}

function compileOne(pattern: string, opts: PatternOptions): { negative: boolean; matcher: Matcher } {
  let p = pattern;
  const negative = p.startsWith('!');
  if (negative) p = p.slice(1);
  if (p.startsWith('~')) return { negative, matcher: new RegexMatcher(compilePcre(p.slice(1))) };
  const pieces = p.split('*').map((piece) => {
    let t = toByteString(piece);
    if (opts.decode) t = decodeComponent(t, opts.decode === 'plus');
    if (opts.fold === 'lower') t = t.toLowerCase();
    else if (opts.fold === 'upper') t = t.toUpperCase();
    return t;
  });
  return { negative, matcher: new WildcardMatcher(pieces) };
}

/**
 * Compile a pattern or an array of patterns (§3.3). An empty array matches everything.
 * @throws Error from the regex compiler for an invalid `~` pattern.
 */
export function compilePatterns(value: string | string[], opts: PatternOptions = {}): PatternSet {
  const set = new PatternSet(opts.fold);
  for (const p of Array.isArray(value) ? value : [value]) {
    const { negative, matcher } = compileOne(p, opts);
    (negative ? set.negative : set.positive).push(matcher);
  }
  return set;
}

/** One `{name: patterns}` entry of an object pattern. */
export interface NamedPattern { name: string; patterns: PatternSet }

/**
 * `arguments` / `headers` / `cookies` value: an object (all entries must match)
 * or an array of objects (any object must match; `[]` matches everything).
 * Names are prepared by `prepareName` (lowercased for headers, decoded for arguments).
 */
export class ObjectPattern {
  readonly alternatives: NamedPattern[][];
  constructor(alternatives: NamedPattern[][]) { this.alternatives = alternatives; }

  /**
   * @param values collects every occurrence of `name` into `out` (cleared first).
   */
  test<C>(ctx: C, values: (ctx: C, name: string, out: string[]) => void, scratch: string[]): boolean {
    if (this.alternatives.length === 0) return true;
    for (let a = 0; a < this.alternatives.length; a++) {
      const entries = this.alternatives[a];
      let ok = true;
      for (let e = 0; e < entries.length && ok; e++) {
        scratch.length = 0;
        values(ctx, entries[e].name, scratch);
        if (scratch.length === 0) { ok = false; break; }
        for (let i = 0; i < scratch.length; i++) {
          if (!entries[e].patterns.test(scratch[i])) { ok = false; break; }
        }
      }
      if (ok) return true;
    }
    return false;
  }
}

/** Compile an object pattern (§3.4). */
export function compileObjectPattern(
  value: Record<string, string | string[]> | Array<Record<string, string | string[]>>,
  prepareName: (name: string) => string,
  opts: PatternOptions,
): ObjectPattern {
  const objects = Array.isArray(value) ? value : [value];
  return new ObjectPattern(objects.map((o) => Object.keys(o).map((name) => ({
    name: prepareName(name),
    patterns: compilePatterns(o[name], opts),
  }))));
}
