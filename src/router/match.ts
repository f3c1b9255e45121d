/**
 * A route step's compiled `match` object (spec/router.md §3.2): every present
 * property must match. `if` is evaluated first.
 */
import type { Request, Peer } from './request.ts';
import { compilePatterns, compileObjectPattern, type PatternSet, type ObjectPattern } from './pattern.ts';
import { compileCondition, type Condition } from './variables.ts';
import { compileAddressPatterns } from '../config/address.ts';
import { decodeComponent, toByteString } from './uri.ts';

type Patterns = string | string[];
type ObjectPatterns = Record<string, Patterns> | Array<Record<string, Patterns>>;
type AddressMatcher = (peer: Peer) => boolean;

function argValues(r: Request, name: string, out: string[]): void {
  const a = r.args();
  for (let i = 0; i < a.length; i += 2) if (a[i] === name) out.push(a[i + 1]);
}

function headerValues(r: Request, lower: string, out: string[]): void {
  const h = r.rawHeaders;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i].length === lower.length && h[i].toLowerCase() === lower) out.push(h[i + 1]);
  }
}

function cookieValues(r: Request, name: string, out: string[]): void {
  const c = r.cookies();
  for (let i = 0; i < c.length; i += 2) if (c[i] === name) out.push(c[i + 1]);
}

/** Compiled `match`: null members are absent properties. */
export class StepMatch {
  condition: Condition | null = null;
  method: PatternSet | null = null;
  host: PatternSet | null = null;
  uri: PatternSet | null = null;
  query: PatternSet | null = null;
  scheme: string | null = null;
  arguments: ObjectPattern | null = null;
  headers: ObjectPattern | null = null;
  cookies: ObjectPattern | null = null;
  source: AddressMatcher | null = null;
  destination: AddressMatcher | null = null;
  private readonly scratch: string[] = [];

  /** True when `r` satisfies every property. @throws on template/regex runtime errors (→ 500). */
  test(r: Request): boolean {
    if (this.condition !== null && !this.condition.test(r)) return false;
    if (this.method !== null && !this.method.test(r.method)) return false;
    if (this.host !== null && !this.host.test(r.host)) return false;
    if (this.uri !== null && !this.uri.test(r.path)) return false;
    if (this.scheme !== null && r.scheme !== this.scheme) return false;
    if (this.query !== null && !this.query.test(decodeComponent(r.query, true))) return false;
    if (this.arguments !== null && !this.arguments.test(r, argValues, this.scratch)) return false;
    if (this.headers !== null && !this.headers.test(r, headerValues, this.scratch)) return false;
    if (this.cookies !== null && !this.cookies.test(r, cookieValues, this.scratch)) return false;
    if (this.source !== null && !this.source(r.peer())) return false;
    if (this.destination !== null && !this.destination(r.local())) return false;
    return true;
  }
}

/**
 * Compile a `match` object; null when it is absent or empty (always matches).
 * @throws Error for invalid patterns or templates.
 */
export function compileMatch(m: Record<string, unknown> | undefined): StepMatch | null {
  if (m === undefined || m === null || Object.keys(m).length === 0) return null;
  const s = new StepMatch();
  if (m.if !== undefined) s.condition = compileCondition(m.if as string);
  if (m.method !== undefined) s.method = compilePatterns(m.method as Patterns, { fold: 'upper' });
  if (m.host !== undefined) s.host = compilePatterns(m.host as Patterns, { fold: 'lower' });
  if (m.uri !== undefined) s.uri = compilePatterns(m.uri as Patterns, { decode: 'pct' });
  if (m.query !== undefined) s.query = compilePatterns(m.query as Patterns, { decode: 'plus' });
  if (m.scheme !== undefined) s.scheme = (m.scheme as string).toLowerCase();
  if (m.arguments !== undefined) {
    s.arguments = compileObjectPattern(m.arguments as ObjectPatterns,
      (n) => decodeComponent(toByteString(n), true), { decode: 'plus' });
  }
  if (m.headers !== undefined) {
    s.headers = compileObjectPattern(m.headers as ObjectPatterns, (n) => n.toLowerCase(), { fold: 'lower' });
  }
  if (m.cookies !== undefined) {
    s.cookies = compileObjectPattern(m.cookies as ObjectPatterns, (n) => toByteString(n), {});
  }
  if (m.source !== undefined) s.source = compileAddressPatterns(m.source as Patterns) as AddressMatcher;
  if (m.destination !== undefined) s.destination = compileAddressPatterns(m.destination as Patterns) as AddressMatcher;
  return s;
}
