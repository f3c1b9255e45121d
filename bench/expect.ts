/**
 * Checking a server before it is measured: it must answer the scenario's
 * request with the expected status and body, or it is n/a, not fast.
 */
import { get } from './http.ts';
import type { Expect } from './scenarios.ts';

/** Why a server's answer does not match `expect`, or '' when it does. */
export async function mismatch(port: number, path: string, expect: Expect): Promise<string> {
  const r = await get(port, path);
  const text = r.body.toString('utf8');
  if (r.status !== expect.status) {
    const snippet = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 80);
    return `GET ${path} answered ${r.status}${snippet ? ` "${snippet}"` : ''}, expected ${expect.status}`;
  }
  if (expect.body !== undefined && text !== expect.body) return `GET ${path} answered ${JSON.stringify(text.slice(0, 60))}, expected ${JSON.stringify(expect.body)}`;
  if (expect.length !== undefined && r.body.length !== expect.length) return `GET ${path} answered ${r.body.length} bytes, expected ${expect.length}`;
  return '';
}

/** Throw unless the server answers as expected. */
export async function verify(port: number, path: string, expect: Expect): Promise<void> {
  const why = await mismatch(port, path, expect);
  if (why) throw new Error(why);
}
