/**
 * Time to apply a configuration over the control API, measured from the
 * client: PUT /config with one listener and N route steps, until Junction
 * answers 200 (validated, applied by the router, stored). Successive PUTs
 * alternate between two variants so each one is a real change; the route
 * table is then checked by requesting the last route.
 */
import { get } from './http.ts';
import { freePort } from './proc.ts';
import { EMPTY_CONFIG, type JunctionDaemon } from './servers/junction.ts';
import type { OtherRow } from './table.ts';

const REPEAT = 5;

/** A configuration of `n` routes `/v<variant>/r<i>/*` → return 200, then a catch-all 404. */
export function routesConfig(port: number, n: number, variant: number): object {
  const routes: object[] = [];
  for (let i = 0; i < n; i++) {
    routes.push({ match: { uri: `/v${variant}/r${i}/*`, method: ['GET', 'HEAD'] }, action: { return: 200 } });
  }
  routes.push({ action: { return: 404 } });
  return { listeners: { [`127.0.0.1:${port}`]: { pass: 'routes' } }, routes, applications: {} };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timeApply(j: JunctionDaemon, n: number): Promise<OtherRow> {
  const measurement = `apply config, ${new Intl.NumberFormat('en-US').format(n)} route${n === 1 ? '' : 's'}`;
  const server = 'Junction PUT /config';
  try {
    const port = await freePort();
    await j.configure(routesConfig(port, n, 0)); // creates the listener; not counted
    const times: number[] = [];
    let variant = 0;
    for (let i = 0; i < REPEAT; i++) {
      variant = i % 2 ? 0 : 1;
      times.push((await j.configure(routesConfig(port, n, variant))).ms);
    }
    const hit = await get(port, `/v${variant}/r${n - 1}/x`);
    const miss = await get(port, `/v${1 - variant}/r${n - 1}/x`);
    if (hit.status !== 200 || miss.status !== 404) {
      throw new Error(`route table not applied: last route answered ${hit.status}, stale route ${miss.status}`);
    }
    const size = Buffer.byteLength(JSON.stringify(routesConfig(port, n, variant)));
    return {
      measurement, server, junction: true, value: median(times), unit: 'ms',
      note: `median of ${REPEAT} PUTs (${Math.min(...times).toFixed(1)}–${Math.max(...times).toFixed(1)} ms), ${size < 1024 ? `${size} bytes` : `${(size / 1024).toFixed(0)} KiB`} of JSON`,
    };
  } catch (e) {
    return { measurement, server, junction: true, unit: 'ms', na: (e as Error).message };
  } finally {
    await j.configure(EMPTY_CONFIG).catch(() => {});
  }
}

/** Time applying a 1-route and a 1,000-route configuration. */
export async function measureConfigApply(junction: () => Promise<JunctionDaemon>): Promise<OtherRow[]> {
  let j: JunctionDaemon;
  try {
    j = await junction();
  } catch (e) {
    const na = (e as Error).message;
    return [1, 1000].map((n) => ({
      measurement: `apply config, ${new Intl.NumberFormat('en-US').format(n)} route${n === 1 ? '' : 's'}`,
      server: 'Junction PUT /config', junction: true, unit: 'ms' as const, na,
    }));
  }
  return [await timeApply(j, 1), await timeApply(j, 1000)];
}
