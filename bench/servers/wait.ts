/** Waiting for a freshly started server to answer HTTP. */
import { get } from '../http.ts';
import { waitFor, type Proc } from '../proc.ts';

/** Resolve once GET http://127.0.0.1:port/ gets any HTTP answer; fail after `ms` or if `p` exits. */
export async function waitForHttp(port: number, p: Proc, ms = 15_000): Promise<void> {
  await waitFor(async () => (await get(port, '/', 2000)).status > 0, `${p.name} to answer on port ${port}`, ms, p);
}
