/**
 * The state directory (spec/control-api.md §7.4): `conf.json` (the committed
 * configuration, compact JSON, mode 0600), `version` (13500, no newline),
 * `certs/` and `scripts/` (0700). Writes are atomic: temp file, fsync, rename.
 */
import fs from 'node:fs';
import path from 'node:path';
import { STATE_VERSION } from '../runtime/version.ts';

/** Create the state directory and its subdirectories if missing. */
export function prepareStateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const sub of ['certs', 'scripts']) fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
}

/** Write `data` to `file` atomically (temp + fsync + rename), mode 0600. */
export function writeAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Persist a committed configuration (already serialized as compact JSON). */
export function storeConfig(dir: string, json: string): void {
  const vfile = path.join(dir, 'version');
  let stored = '';
  try { stored = fs.readFileSync(vfile, 'utf8'); } catch { /* absent */ }
  if (stored !== String(STATE_VERSION)) writeAtomic(vfile, String(STATE_VERSION));
  writeAtomic(path.join(dir, 'conf.json'), json);
}

/**
 * The stored configuration text, or null when there is none usable
 * (absent; or a non-numeric `version`, which discards it as Unit does).
 */
export function loadConfigText(dir: string): Buffer | null {
  let version = '12500';
  try { version = fs.readFileSync(path.join(dir, 'version'), 'utf8').trim(); } catch { /* pre-1.26 state */ }
  if (!/^\d+$/.test(version)) return null;
  try { return fs.readFileSync(path.join(dir, 'conf.json')); } catch { return null; }
}
