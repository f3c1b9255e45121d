/**
 * The router's unprivileged identity (spec/applications.md §1.1, "Privilege
 * detail"; DESIGN.md: the router never runs as root).
 *
 * When Junction is started as root, each router process switches its
 * effective user and group to `--user`/`--group` (default `nobody` and that
 * user's primary group) with that user's supplementary groups, before it
 * touches a client connection: a `share` then opens files with the rights
 * Unit's router has, so a file the unprivileged user cannot read is a 403.
 *
 * The real and saved user ids stay root so that the one privileged thing the
 * router does itself — opening access log files, which Unit's main opens for
 * it and which Node cannot pass between processes as a descriptor — can run
 * briefly as root (`asPrivileged`). Everything else privileged (binding
 * listeners, spawning applications) stays in main.
 */
import { spawnSync } from 'node:child_process';

/** The identity switched to, when one was. */
interface Identity { user: string; uid: number; gid: number }

let dropped: Identity | null = null;

function idOf(flag: '-u' | '-g', user: string): number {
  const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`getpwnam("${user}") failed: ${(r.stderr || 'no such user').trim()}`);
  return Number(r.stdout.trim());
}

function groupIdOf(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const r = spawnSync('getent', ['group', group], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`getgrnam("${group}") failed`);
  return Number(r.stdout.split(':')[2]);
}

/**
 * Resolve `user` (name or number) and `group` (name, number, or the user's
 * primary group when undefined) to numeric ids.
 * @throws Error when the user or group does not exist.
 */
export function resolveIdentity(user: string, group?: string): { uid: number; gid: number } {
  const uid = /^\d+$/.test(user) ? Number(user) : idOf('-u', user);
  const gid = group !== undefined ? groupIdOf(group) : idOf('-g', user);
  return { uid, gid };
}

/**
 * Switch this process's effective identity to `user`/`group`, with the
 * user's supplementary groups. Does nothing unless the process runs as root.
 * @throws Error when the user or group does not exist.
 */
export function dropPrivileges(user: string, group?: string): void {
  if (process.getuid?.() !== 0 || dropped !== null) return;
  const { uid, gid } = resolveIdentity(user, group);
  if (uid === 0) return;
  process.initgroups!(/^\d+$/.test(user) ? Number(user) : user, gid);
  process.setegid!(gid);
  process.seteuid!(uid);
  dropped = { user, uid, gid };
}

/**
 * Run `fn` (synchronous) with root's effective identity, when the process
 * dropped it; otherwise just run it. Used only to open access log files.
 */
export function asPrivileged<T>(fn: () => T): T {
  const d = dropped;
  if (d === null) return fn();
  process.seteuid!(0);
  process.setegid!(0);
  try {
    return fn();
  } finally {
    process.setegid!(d.gid);
    process.seteuid!(d.uid);
  }
}

/** The effective identity the process switched to, or null. */
export function droppedIdentity(): Identity | null {
  return dropped;
}
