/**
 * `~` match patterns: PCRE2 syntax translated to an equivalent JavaScript
 * RegExp (spec/router.md §3.3, control-api.md §6.5). The translation keeps
 * PCRE's meaning where JS differs by default (`.` excludes only LF, `$` also
 * matches before a final LF, `\s` is ASCII whitespace, `\h`/`\v`/`\R`, `\A`/`\z`/`\Z`,
 * POSIX classes, inline option changes) and refuses what JS cannot express
 * faithfully (atomic groups, possessive quantifiers, recursion, conditionals,
 * backtracking verbs, `\K`, branch reset).
 *
 * The result is used for an unanchored search (`re.test(subject)`); it has
 * the `u` flag (code point semantics) and `i` when the pattern starts
 * caseless.
 */

/** A refused pattern; `message` reads `Invalid regular expression: «msg»[ at offset «n»]`. */
export class RegexError extends Error {
  readonly reason: string;
  readonly offset?: number;
  constructor(reason: string, offset: number | undefined, patternLength: number) {
    // Like Unit, the offset is reported only when it points inside the pattern.
    const at = offset !== undefined && offset < patternLength ? offset : undefined;
    super(at === undefined ? `Invalid regular expression: ${reason}`
      : `Invalid regular expression: ${reason} at offset ${at}`);
    this.name = 'RegexError';
    this.reason = reason;
    if (at !== undefined) this.offset = at;
  }
}

type Range = [number, number];
const MAX_CP = 0x10ffff;

/** PCRE's \s without UCP: HT, LF, VT, FF, CR, space. */
const SPACE: Range[] = [[0x09, 0x0d], [0x20, 0x20]];
const HSPACE: Range[] = [[0x09, 0x09], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x180e, 0x180e],
  [0x2000, 0x200a], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
const VSPACE: Range[] = [[0x0a, 0x0d], [0x85, 0x85], [0x2028, 0x2029]];
const DIGIT: Range[] = [[0x30, 0x39]];
const WORD: Range[] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];

/** POSIX bracket classes (ASCII, as PCRE without UCP). */
const POSIX: Readonly<Record<string, Range[]>> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]],
  alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0x00, 0x7f]],
  blank: [[0x09, 0x09], [0x20, 0x20]],
  cntrl: [[0x00, 0x1f], [0x7f, 0x7f]],
  digit: DIGIT,
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]],
  space: SPACE,
  upper: [[0x41, 0x5a]],
  word: WORD,
  xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

function complement(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

const cp = (c: number): string => `\\u{${c.toString(16)}}`;
const rangesText = (ranges: readonly Range[]): string =>
  ranges.map(([lo, hi]) => (lo === hi ? cp(lo) : `${cp(lo)}-${cp(hi)}`)).join('');
const classOf = (ranges: readonly Range[]): string => `[${rangesText(ranges)}]`;

const isDigitCh = (c: string): boolean => c >= '0' && c <= '9';
const isHexCh = (c: string): boolean => /^[0-9a-fA-F]$/.test(c);
const isOctCh = (c: string): boolean => c >= '0' && c <= '7';
const isAlnumCh = (c: string): boolean => /^[0-9A-Za-z]$/.test(c);
/** Characters that must be escaped to stand for themselves outside a JS class. */
const JS_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

interface Flags { i: boolean; m: boolean; s: boolean; x: boolean; xx: boolean; n: boolean; U: boolean }

interface Frame {
  flags: Flags;
  /** JS modifier groups `(?i:` opened inside this group by `(?i)`-style switches. */
  opened: string[];
  /** True for a lookbehind, where PCRE needs fixed length (JS accepts more, which is harmless). */
  start: number;
}

/** What a class item read by classAtom() is. */
type ClassItem = { kind: 'char'; code: number } | { kind: 'set'; text: string };

class Translator {
  private readonly src: string;
  private i = 0;
  private out = '';
  private readonly frames: Frame[] = [];
  private readonly totalGroups: number;
  private readonly groupNames: Set<string>;
  private groupsSeen = 0;
  private readonly base: Flags;

  constructor(src: string) {
    this.src = src;
    const { count, names } = scanGroups(src);
    this.totalGroups = count;
    this.groupNames = names;
    this.base = { i: false, m: false, s: false, x: false, xx: false, n: false, U: false };
  }

  private fail(reason: string, offset?: number): never {
    throw new RegexError(reason, offset, this.src.length);
  }

  private get flags(): Flags {
    return this.frames.length ? this.frames[this.frames.length - 1].flags : this.base;
  }

  translate(): { source: string; flags: string } {
    // Leading start-of-pattern items: (*UTF) style options, then option settings that
    // apply to the whole pattern and so become JS flags.
    for (;;) {
      const m = /^\(\*(UTF8?|UTF|UCP|NO_AUTO_POSSESS|NO_START_OPT|NO_DOTSTAR_ANCHOR)\)/.exec(this.src.slice(this.i));
      if (!m) break;
      if (m[1] === 'UCP') this.fail('(*UCP) is not supported', this.i);
      this.i += m[0].length;
    }
    const root: Frame = { flags: this.base, opened: [], start: 0 };
    while (this.src.startsWith('(?', this.i)) {
      const m = /^\(\?([imnsxU^-]*)\)/.exec(this.src.slice(this.i));
      if (!m) break;
      this.applyFlags(this.base, m[1], this.i);
      this.i += m[0].length;
    }
    const jsFlags = this.base.i ? 'iu' : 'u';
    // From here on a caseless switch is expressed with JS modifier groups relative to the base.
    root.flags = { ...this.base };
    this.frames.push(root);
    this.sequence();
    if (this.i < this.src.length) this.fail('unmatched closing parenthesis', this.i);
    this.closeOpened(root);
    return { source: this.out, flags: jsFlags };
  }

  private applyFlags(f: Flags, spec: string, at: number): void {
    let on = true;
    for (let k = 0; k < spec.length; k++) {
      const c = spec[k];
      if (c === '-') {
        on = false;
        continue;
      }
      if (c === '^') {
        if (k !== 0) this.fail('invalid option in (?^', at);
        f.i = f.m = f.s = f.x = f.xx = f.n = false;
        continue;
      }
      if (c === 'x' && spec[k + 1] === 'x') {
        f.x = f.xx = on;
        k++;
        continue;
      }
      if (c === 'x') {
        f.x = on;
        if (!on) f.xx = false;
        continue;
      }
      if (c === 'i' || c === 'm' || c === 's' || c === 'n' || c === 'U') {
        f[c] = on;
        continue;
      }
      this.fail('unrecognized character after (? or (?-', at);
    }
  }

  /** JS modifier text that turns the caseless state from `from` to `to`, or '' if equal. */
  private static caseModifier(from: boolean, to: boolean): string {
    if (from === to) return '';
    return to ? '(?i:' : '(?-i:';
  }

  private closeOpened(frame: Frame): void {
    this.out += ')'.repeat(frame.opened.length);
  }

  /** Alternatives up to a `)` at this level or the end of the pattern. */
  private sequence(): void {
    const src = this.src;
    while (this.i < src.length) {
      const c = src[this.i];
      if (c === ')') return;
      if (c === '|') {
        const frame = this.frames[this.frames.length - 1];
        this.closeOpened(frame);
        this.out += '|';
        this.out += frame.opened.join('');
        this.i++;
        continue;
      }
      this.item();
    }
  }

  private skipExtended(): boolean {
    const f = this.flags;
    if (!f.x) return false;
    const c = this.src[this.i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
      this.i++;
      return true;
    }
    if (c === '#') {
      const nl = this.src.indexOf('\n', this.i);
      this.i = nl < 0 ? this.src.length : nl + 1;
      return true;
    }
    return false;
  }

  private item(): void {
    if (this.skipExtended()) return;
    const src = this.src;
    const start = this.i;
    const c = src[this.i];
    let atom: string;
    let quantifiable = true;
    switch (c) {
      case '(': {
        const g = this.group();
        if (g === null) return;
        atom = g.text;
        quantifiable = g.quantifiable;
        break;
      }
      case '[':
        atom = this.charClass();
        break;
      case '\\': {
        const e = this.escape();
        if (e === null) return;
        atom = e.text;
        quantifiable = e.quantifiable;
        break;
      }
      case '.':
        this.i++;
        atom = this.flags.s ? '[^]' : '[^\\n]';
        break;
      case '^':
        this.i++;
        atom = this.flags.m ? '(?:(?<![^])|(?<=\\n)(?=[^]))' : '(?<![^])';
        quantifiable = false;
        break;
      case '$':
        this.i++;
        atom = this.flags.m ? '(?=\\n|(?![^]))' : '(?=\\n?(?![^]))';
        quantifiable = false;
        break;
      case '*': case '+': case '?':
        this.fail('quantifier does not follow a repeatable item', this.i);
        // falls through (fail never returns)
      case '{':
        if (this.quantifierAt(this.i)) this.fail('quantifier does not follow a repeatable item', this.i);
        this.i++;
        atom = '\\{';
        break;
      default:
        this.i++;
        atom = this.literal(c);
    }
    this.out += atom;
    this.quantifier(quantifiable, start);
  }

  private literal(c: string): string {
    if (JS_SYNTAX.has(c)) return '\\' + c;
    const code = c.codePointAt(0)!;
    if (code < 0x20 || code === 0x7f) return cp(code);
    return c;
  }

  /** Length of a `{n}`, `{n,}`, `{n,m}` quantifier at `at`, or 0 if the `{` is a literal. */
  private quantifierAt(at: number): number {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(at, at + 40));
    return m ? m[0].length : 0;
  }

  private quantifier(quantifiable: boolean, atomStart: number): void {
    while (this.skipExtended()) { /* whitespace between an atom and its quantifier */ }
    const src = this.src;
    const c = src[this.i];
    let q = '';
    if (c === '*' || c === '+' || c === '?') {
      q = c;
      this.i++;
    } else if (c === '{') {
      const len = this.quantifierAt(this.i);
      if (!len) return;
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(this.i))!;
      const min = Number(m[1]);
      const max = m[3] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (min > 65535 || (max !== Infinity && max > 65535)) this.fail('number too big in {} quantifier', this.i + len - 1);
      if (max < min) this.fail('numbers out of order in {} quantifier', this.i + len - 1);
      q = m[0];
      this.i += len;
    } else {
      return;
    }
    if (!quantifiable) this.fail('quantifier does not follow a repeatable item', atomStart);
    let lazy = this.flags.U;
    if (src[this.i] === '+') this.fail('possessive quantifiers are not supported', this.i);
    if (src[this.i] === '?') {
      lazy = !lazy;
      this.i++;
    }
    this.out += q + (lazy ? '?' : '');
    const next = src[this.i];
    if (next === '*' || next === '+' || next === '?' || (next === '{' && this.quantifierAt(this.i))) {
      // PCRE accepts a quantified quantifier only through grouping; say so as it does.
      this.fail('quantifier does not follow a repeatable item', this.i);
    }
  }

  /** `(` at this.i. Returns null for items that emit nothing (comments, option settings). */
  private group(): { text: string; quantifiable: boolean } | null {
    const src = this.src;
    const at = this.i;
    if (src[at + 1] === '*') {
      this.fail('backtracking control verbs and (* options are not supported', at);
    }
    if (src[at + 1] !== '?') {
      this.i++;
      const capture = !this.flags.n;
      if (capture) this.groupsSeen++;
      return { text: this.groupBody(capture ? '(' : '(?:', at), quantifiable: true };
    }
    const rest = src.slice(at + 2);
    const c = rest[0];
    if (c === '#') {
      const close = src.indexOf(')', at);
      if (close < 0) this.fail('missing ) after (?# comment', src.length);
      this.i = close + 1;
      return null;
    }
    if (c === ':') {
      this.i += 3;
      return { text: this.groupBody('(?:', at), quantifiable: true };
    }
    if (c === '=' || c === '!') {
      this.i += 3;
      return { text: this.groupBody('(?' + c, at), quantifiable: false };
    }
    if (rest.startsWith('<=') || rest.startsWith('<!')) {
      this.i += 4;
      return { text: this.groupBody('(?' + rest.slice(0, 2), at), quantifiable: false };
    }
    const named = /^(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|P<([A-Za-z_]\w*)>)/.exec(rest);
    if (named) {
      const name = named[1] ?? named[2] ?? named[3];
      if (name.length > 32) this.fail('subpattern name is too long (maximum 32 code units)', at + 2);
      this.i += 2 + named[0].length;
      this.groupsSeen++;
      return { text: this.groupBody(`(?<${name}>`, at), quantifiable: true };
    }
    const backref = /^P=([A-Za-z_]\w*)\)/.exec(rest);
    if (backref) {
      if (!this.groupNames.has(backref[1])) this.fail('reference to non-existent subpattern', at + 3);
      this.i += 2 + backref[0].length;
      return { text: `\\k<${backref[1]}>`, quantifiable: true };
    }
    if (c === '>') this.fail('atomic groups are not supported', at);
    if (c === '|') this.fail('branch reset groups are not supported', at);
    if (c === '(') this.fail('conditional groups are not supported', at);
    if (c === 'C') this.fail('callouts are not supported', at);
    if (c === 'R' || c === '&' || c === '+' || isDigitCh(c ?? '') || rest.startsWith('P>')
      || (c === '-' && isDigitCh(rest[1] ?? ''))) {
      this.fail('recursion and subroutine calls are not supported', at);
    }
    if (rest.startsWith('*')) this.fail('non-atomic assertions are not supported', at);
    const options = /^([imnsxU^-]*)([:)])/.exec(rest);
    if (options) {
      const flags = { ...this.flags };
      this.applyFlags(flags, options[1], at);
      this.i += 2 + options[0].length;
      const frame = this.frames[this.frames.length - 1];
      if (options[2] === ':') {
        const mod = Translator.caseModifier(frame.flags.i, flags.i);
        const body = this.groupBody('(?:', at, flags);
        return { text: mod ? `${mod}${body})` : body, quantifiable: true };
      }
      // (?i) and friends change the rest of the enclosing group, across later alternatives.
      const mod = Translator.caseModifier(frame.flags.i, flags.i);
      frame.flags = flags;
      if (mod) {
        frame.opened.push(mod);
        this.out += mod;
      }
      return null;
    }
    this.fail('unrecognized character after (? or (?-', at + 2);
  }

  /** Translates up to the matching `)`; `open` is the JS group opener to emit. */
  private groupBody(open: string, at: number, flags: Flags = { ...this.flags }): string {
    const saved = this.out;
    this.out = open;
    const frame: Frame = { flags, opened: [], start: at };
    this.frames.push(frame);
    this.sequence();
    if (this.src[this.i] !== ')') this.fail('missing closing parenthesis', this.src.length);
    this.closeOpened(frame);
    this.frames.pop();
    this.i++;
    const text = this.out + ')';
    this.out = saved;
    return text;
  }

  /** A backslash sequence outside a class. null when it emits nothing (`\E`). */
  private escape(): { text: string; quantifiable: boolean } | null {
    const src = this.src;
    const at = this.i;
    if (at + 1 >= src.length) this.fail('\\ at end of pattern', src.length);
    const c = src[at + 1];
    this.i += 2;
    const set = (ranges: Range[], negate = false) => ({ text: classOf(negate ? complement(ranges) : ranges), quantifiable: true });
    switch (c) {
      case 'A': case 'G': return { text: '(?<![^])', quantifiable: false };
      case 'z': return { text: '(?![^])', quantifiable: false };
      case 'Z': return { text: '(?=\\n?(?![^]))', quantifiable: false };
      case 'b': case 'B': return { text: '\\' + c, quantifiable: false };
      case 'd': case 'D': case 'w': case 'W': return { text: '\\' + c, quantifiable: true };
      case 's': return set(SPACE);
      case 'S': return set(SPACE, true);
      case 'h': return set(HSPACE);
      case 'H': return set(HSPACE, true);
      case 'v': return set(VSPACE);
      case 'V': return set(VSPACE, true);
      case 'R': return { text: `(?:\\r\\n|${classOf(VSPACE)})`, quantifiable: true };
      case 'N':
        if (src[this.i] === '{') this.fail('\\N{name} is not supported', at);
        return { text: '[^\\n]', quantifiable: true };
      case 'Q': {
        const endQ = src.indexOf('\\E', this.i);
        const text = src.slice(this.i, endQ < 0 ? src.length : endQ);
        this.i = endQ < 0 ? src.length : endQ + 2;
        if (text === '') return null;
        // Each character is one atom, so a following quantifier binds to the last one, as in PCRE.
        return { text: [...text].map((ch) => this.literal(ch)).join(''), quantifiable: true };
      }
      case 'E': return null;
      case 'K': this.fail('\\K is not supported', at);
      // falls through (fail never returns)
      case 'X': case 'C': this.fail(`\\${c} is not supported`, at);
      // falls through
      case 'p': case 'P': return { text: this.property(c === 'P', at), quantifiable: true };
      case 'g': return { text: this.gReference(at), quantifiable: true };
      case 'k': {
        const m = /^(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|\{([A-Za-z_]\w*)\})/.exec(src.slice(this.i));
        if (!m) this.fail('\\k is not followed by a braced, angle-bracketed, or quoted name', at + 1);
        const name = m[1] ?? m[2] ?? m[3];
        if (!this.groupNames.has(name)) this.fail('reference to non-existent subpattern', at + 1);
        this.i += m[0].length;
        return { text: `\\k<${name}>`, quantifiable: true };
      }
      default:
        break;
    }
    if (isDigitCh(c) && c !== '0') {
      // \1..\9 are back references; \10 and up only when that many groups were seen, else octal.
      let digits = c;
      while (isDigitCh(src[this.i] ?? '')) digits += src[this.i++];
      const n = Number(digits);
      if (n < 10 || c === '8' || c === '9' || n <= this.groupsSeen) {
        if (n > this.totalGroups) this.fail('reference to non-existent subpattern', this.i - 1);
        return { text: `(?:\\${n})`, quantifiable: true };
      }
      this.i = at + 1;
    }
    const code = this.characterEscape(at);
    return { text: code === undefined ? this.fail('unrecognized character follows \\', at + 1) : cp(code), quantifiable: true };
  }

  /**
   * A backslash sequence standing for one character (`\n`, `\x{263a}`, `\012`,
   * `\cA`, `\.`), with this.i just after `\` and its letter (or, for octal, the
   * backslash only). Returns undefined for an unknown letter escape.
   */
  private characterEscape(at: number): number | undefined {
    const src = this.src;
    const c = src[at + 1];
    switch (c) {
      case 'a': return 0x07;
      case 'e': return 0x1b;
      case 'f': return 0x0c;
      case 'n': return 0x0a;
      case 'r': return 0x0d;
      case 't': return 0x09;
      case 'c': {
        const ch = src[this.i];
        if (ch === undefined) this.fail('\\c at end of pattern', src.length);
        const code = ch.toUpperCase().charCodeAt(0);
        if (code < 0x20 || code > 0x7e) this.fail('\\c must be followed by a printable ASCII character', this.i);
        this.i++;
        return code ^ 0x40;
      }
      case 'x': {
        if (src[this.i] === '{') {
          const close = src.indexOf('}', this.i);
          const hex = close < 0 ? '' : src.slice(this.i + 1, close);
          if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) this.fail('\\x{ is not followed by hexadecimal digits and }', this.i);
          const v = parseInt(hex, 16);
          if (v > MAX_CP || (v >= 0xd800 && v <= 0xdfff)) this.fail('character code point value in \\x{} or \\o{} is too large', this.i);
          this.i = close + 1;
          return v;
        }
        let hex = '';
        while (hex.length < 2 && isHexCh(src[this.i] ?? '')) hex += src[this.i++];
        return hex === '' ? 0 : parseInt(hex, 16);
      }
      case 'o': {
        if (src[this.i] !== '{') this.fail('missing opening brace after \\o', this.i);
        const close = src.indexOf('}', this.i);
        const oct = close < 0 ? '' : src.slice(this.i + 1, close);
        if (!/^[0-7]{1,11}$/.test(oct)) this.fail('non-octal character in \\o{} (closing brace missing?)', this.i);
        const v = parseInt(oct, 8);
        if (v > MAX_CP || (v >= 0xd800 && v <= 0xdfff)) this.fail('character code point value in \\x{} or \\o{} is too large', this.i);
        this.i = close + 1;
        return v;
      }
      default:
        break;
    }
    if (isOctCh(c)) {
      // Up to three octal digits after the backslash.
      let oct = '';
      this.i = at + 1;
      while (oct.length < 3 && isOctCh(src[this.i] ?? '')) oct += src[this.i++];
      return parseInt(oct, 8);
    }
    if (isAlnumCh(c)) return undefined;
    return c.codePointAt(0)!;
  }

  /** `\p{…}`, `\pL`, `\P…`, `\p{^…}` → a JS Unicode property escape. */
  private property(negated: boolean, at: number): string {
    const src = this.src;
    let name: string;
    if (src[this.i] === '{') {
      const close = src.indexOf('}', this.i);
      if (close < 0) this.fail('malformed \\P or \\p sequence', this.i);
      name = src.slice(this.i + 1, close);
      this.i = close + 1;
    } else {
      name = src[this.i] ?? '';
      this.i++;
    }
    if (name.startsWith('^')) {
      negated = !negated;
      name = name.slice(1);
    }
    name = name.replace(/[\s_-]/g, (ch) => (ch === '_' ? '_' : ''));
    if (name === 'Any') return negated ? '[^\\s\\S]' : '[^]';
    if (name === 'L&') return negated ? '[^\\p{Lu}\\p{Ll}\\p{Lt}]' : '[\\p{Lu}\\p{Ll}\\p{Lt}]';
    const letter = negated ? 'P' : 'p';
    for (const candidate of [name, `Script=${name}`]) {
      try {
        new RegExp(`\\p{${candidate}}`, 'u');
        return `\\${letter}{${candidate}}`;
      } catch { /* try the next spelling */ }
    }
    this.fail('unknown property name after \\P or \\p', at + 2);
  }

  /** `\g{n}`, `\gn`, `\g{-n}`, `\g-n`, `\g{name}` back references. */
  private gReference(at: number): string {
    const src = this.src;
    if (src[this.i] === '<' || src[this.i] === '\'') this.fail('subroutine calls are not supported', at);
    const m = /^(?:\{(-?\d+|[A-Za-z_]\w*)\}|(-?\d+))/.exec(src.slice(this.i));
    if (!m) this.fail('a numbered reference must not be zero', at + 2);
    this.i += m[0].length;
    const ref = m[1] ?? m[2];
    if (/^-?\d+$/.test(ref)) {
      let n = Number(ref);
      if (n === 0) this.fail('a numbered reference must not be zero', at + 2);
      if (n < 0) n = this.groupsSeen + 1 + n;
      if (n < 1 || n > this.totalGroups) this.fail('reference to non-existent subpattern', this.i - 1);
      return `(?:\\${n})`;
    }
    if (!this.groupNames.has(ref)) this.fail('reference to non-existent subpattern', this.i - 1);
    return `\\k<${ref}>`;
  }

  /** `[` at this.i: a character class. */
  private charClass(): string {
    const src = this.src;
    const at = this.i;
    this.i++;
    let negate = false;
    if (src[this.i] === '^') {
      negate = true;
      this.i++;
    }
    let body = '';
    let first = true;
    for (;;) {
      if (this.i >= src.length) this.fail('missing terminating ] for character class', src.length);
      if (this.flags.xx && (src[this.i] === ' ' || src[this.i] === '\t')) {
        this.i++;
        continue;
      }
      if (src[this.i] === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      const lo = this.classAtom(at);
      if (src[this.i] === '-' && src[this.i + 1] !== ']' && this.i + 1 < src.length) {
        const dash = this.i;
        this.i++;
        const hi = this.classAtom(at);
        if (lo.kind !== 'char' || hi.kind !== 'char') this.fail('invalid range in character class', dash);
        if (hi.code < lo.code) this.fail('range out of order in character class', this.i - 1);
        body += `${cp(lo.code)}-${cp(hi.code)}`;
        continue;
      }
      body += lo.kind === 'char' ? cp(lo.code) : lo.text;
    }
    if (body === '') return negate ? '[^]' : '[]';
    return `[${negate ? '^' : ''}${body}]`;
  }

  /** One class member: a character, or a set (`\d`, `[:alpha:]`) as JS class text. */
  private classAtom(classAt: number): ClassItem {
    const src = this.src;
    const c = src[this.i];
    if (c === '[') {
      const m = /^\[:(\^?)([a-z]+):\]/.exec(src.slice(this.i));
      if (m) {
        const ranges = POSIX[m[2]];
        if (!ranges) this.fail('unknown POSIX class name', this.i);
        this.i += m[0].length;
        return { kind: 'set', text: rangesText(m[1] ? complement(ranges) : ranges) };
      }
      if (/^\[[.=]/.test(src.slice(this.i))) this.fail('POSIX collating elements are not supported', this.i);
    }
    if (c !== '\\') {
      const ch = String.fromCodePoint(src.codePointAt(this.i)!);
      this.i += ch.length;
      return { kind: 'char', code: ch.codePointAt(0)! };
    }
    const at = this.i;
    if (at + 1 >= src.length) this.fail('\\ at end of pattern', src.length);
    const e = src[at + 1];
    this.i += 2;
    const set = (ranges: Range[], negate = false): ClassItem =>
      ({ kind: 'set', text: rangesText(negate ? complement(ranges) : ranges) });
    switch (e) {
      case 'd': return set(DIGIT);
      case 'D': return set(DIGIT, true);
      case 'w': return set(WORD);
      case 'W': return set(WORD, true);
      case 's': return set(SPACE);
      case 'S': return set(SPACE, true);
      case 'h': return set(HSPACE);
      case 'H': return set(HSPACE, true);
      case 'v': return set(VSPACE);
      case 'V': return set(VSPACE, true);
      case 'b': return { kind: 'char', code: 0x08 };
      case 'p': case 'P': {
        const text = this.property(e === 'P', at);
        if (text.startsWith('[')) return { kind: 'set', text: text.slice(1, -1) };
        return { kind: 'set', text };
      }
      case 'N': case 'R': case 'X': case 'B': case 'A': case 'z': case 'Z': case 'G': case 'K':
        this.fail('escape sequence is invalid in character class', at + 1);
      // falls through (fail never returns)
      case 'Q': {
        // \Q...\E inside a class: take the first quoted character, leave the rest for the loop.
        const endQ = src.indexOf('\\E', this.i);
        const stop = endQ < 0 ? src.length : endQ;
        if (this.i === stop) {
          this.i = endQ < 0 ? src.length : endQ + 2;
          return this.classAtom(classAt);
        }
        const ch = String.fromCodePoint(src.codePointAt(this.i)!);
        this.i += ch.length;
        if (this.i === stop) this.i = endQ < 0 ? src.length : endQ + 2;
        return { kind: 'char', code: ch.codePointAt(0)! };
      }
      case 'E': return this.classAtom(classAt);
      default:
        break;
    }
    if (isDigitCh(e) && (e === '8' || e === '9')) this.fail('unrecognized character follows \\', at + 1);
    const code = this.characterEscape(at);
    if (code === undefined) this.fail('unrecognized character follows \\', at + 1);
    return { kind: 'char', code };
  }
}

/** Counts capturing groups and collects group names (for back reference checks). */
function scanGroups(src: string): { count: number; names: Set<string> } {
  let count = 0;
  const names = new Set<string>();
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      if (src[i + 1] === 'Q') {
        const endQ = src.indexOf('\\E', i + 2);
        i = endQ < 0 ? src.length : endQ + 1;
      } else {
        i++;
      }
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      if (src[i + 1] === '^') i++;
      if (src[i + 1] === ']') i++;
      continue;
    }
    if (c !== '(') continue;
    if (src[i + 1] !== '?' && src[i + 1] !== '*') {
      count++;
      continue;
    }
    const named = /^\(\?(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|P<([A-Za-z_]\w*)>)/.exec(src.slice(i));
    if (named) {
      count++;
      names.add(named[1] ?? named[2] ?? named[3]);
    }
  }
  return { count, names };
}

/** Text after the last `: ` of a V8 RegExp SyntaxError (`Invalid regular expression: /…/u: Nothing to repeat`). */
function jsReason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const k = msg.lastIndexOf(': ');
  return k >= 0 ? msg.slice(k + 2) : msg;
}

/**
 * Translates the PCRE2 pattern of a `~` match (the text after `~`) into a JS
 * RegExp with the same meaning for an unanchored search (router.md §3.3).
 * The empty pattern matches everything.
 *
 * @throws RegexError whose message is the validator's detail,
 *   `Invalid regular expression: «msg»` with ` at offset «n»` when the error
 *   lies inside the pattern (control-api.md §6.5). Unsupported PCRE features
 *   (atomic groups, possessive quantifiers, recursion, conditionals, verbs,
 *   `\K`, `\X`, `\C`, branch reset, callouts) are refused this way too.
 */
export function compilePcre(pattern: string): RegExp {
  const { source, flags } = new Translator(pattern).translate();
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw new RegexError(jsReason(err), undefined, pattern.length);
  }
}
