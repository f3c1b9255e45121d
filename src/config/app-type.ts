/**
 * The application `type` option: language name plus optional version prefix,
 * matched against the available language modules (spec/applications.md §2.2,
 * control-api.md §6.6).
 */

/** Languages an application `type` may name (`go` is an alias of `external`). */
export const APP_LANGUAGES = [
  'external', 'python', 'php', 'perl', 'ruby', 'java', 'wasm', 'wasm-wasi-component',
] as const;
/** One of APP_LANGUAGES. */
export type AppLanguage = typeof APP_LANGUAGES[number];

/** A language module as discovered: `type` is the language name, `version` the full version. */
export interface AppModule { type: string; version: string }

/**
 * Splits `type` into language and version prefix: the language runs up to
 * the first space or digit; the version is the rest after one optional space
 * (`python3.12`, `python 3.12`, `php 8`). Returns null for an unknown language.
 */
export function parseAppType(type: string): { language: AppLanguage; version: string } | null {
  let cut = type.length;
  let version = '';
  for (let i = 0; i < type.length; i++) {
    const c = type[i];
    if (c === ' ') {
      cut = i;
      version = type.slice(i + 1);
      break;
    }
    if (c >= '0' && c <= '9') {
      cut = i;
      version = type.slice(i);
      break;
    }
  }
  const name = type.slice(0, cut);
  const language = name === 'go' ? 'external' : name;
  return (APP_LANGUAGES as readonly string[]).includes(language)
    ? { language: language as AppLanguage, version } : null;
}

/**
 * True when the full `version` starts with `prefix` at a component boundary:
 * the prefix is empty, covers the whole version, or its last character and
 * the next one differ in being digits (`3` matches `3.11.2`, `3.1` does not).
 */
export function versionMatches(version: string, prefix: string): boolean {
  if (prefix === '') return true;
  if (!version.startsWith(prefix)) return false;
  if (version.length === prefix.length) return true;
  const digit = (c: string): boolean => c >= '0' && c <= '9';
  return digit(version[prefix.length]) !== digit(prefix[prefix.length - 1]);
}

/** Orders versions as Unit sorts modules: numeric runs compared as numbers, highest first. */
export function compareVersionsDescending(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    if (x === undefined) return 1;
    if (y === undefined) return -1;
    if (x === y) continue;
    const nx = /^\d/.test(x), ny = /^\d/.test(y);
    if (nx && ny) return Number(y) - Number(x) || (y < x ? -1 : 1);
    return x < y ? 1 : -1;
  }
  return 0;
}

/**
 * The module an application `type` runs on (applications.md §2.2): the
 * highest version of its language whose version matches the prefix.
 * `external` (and `go`) without a version is always available and yields
 * `{ type: 'external', version: '' }`; with a version it matches nothing.
 * Returns null when no module fits — the validator then answers
 * `The module to run "«type»" is not found among the available application modules.`
 */
export function findAppModule<T extends AppModule>(type: string, modules: readonly T[]): T | AppModule | null {
  const parsed = parseAppType(type);
  if (!parsed) return null;
  if (parsed.language === 'external') return parsed.version === '' ? { type: 'external', version: '' } : null;
  const candidates = modules.filter((m) => m.type === parsed.language)
    .sort((a, b) => compareVersionsDescending(a.version, b.version));
  return candidates.find((m) => versionMatches(m.version, parsed.version)) ?? null;
}
