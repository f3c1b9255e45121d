/**
 * `/js_modules` (spec/control-api.md §10): the JS module store. Modules are
 * checked by compiling them (nothing runs) and kept in `<statedir>/scripts/`;
 * the router gets their sources with every configuration it applies. A module
 * named by `settings.js_module` cannot be deleted.
 */
import { checkJsModule } from '../config/js-module.ts';
import { ERR } from './errors.ts';
import type { StoreKind } from './store.ts';

/** Names listed by `settings.js_module` of a configuration tree. */
export function usedJsModules(config: unknown): string[] {
  const settings = (config as { settings?: { js_module?: unknown } } | null)?.settings;
  const v = settings?.js_module;
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

export const JS_MODULES: StoreKind<string> = {
  dir: 'scripts',
  noun: 'JS module',
  parse(name, data) {
    const source = data.toString('utf8');
    const detail = checkJsModule(name, source);
    return detail === null ? { ok: true, item: source } : { ok: false, detail };
  },
  show: (source) => source,
  used: usedJsModules,
  errors: {
    name: ERR.jsModuleName,
    exists: ERR.jsModuleExists,
    invalid: ERR.jsModuleInvalid,
    used: ERR.jsModuleUsed,
    missing: ERR.jsModuleMissing,
    store: ERR.jsModuleStore,
  },
  uploaded: 'JS module uploaded.',
  deleted: 'JS module deleted.',
};
