/**
 * Resident memory of an idle server: the sum of VmRSS over its process tree
 * (from /proc), a moment after it started and answered once.
 */
import { sleep, treeRss, type TreeRss } from './proc.ts';
import { EMPTY_CONFIG, type JunctionDaemon } from './servers/junction.ts';
import type { Reference } from './scenarios.ts';
import { startNginx, returnSite } from './servers/nginx.ts';
import { startNodeApp } from './servers/node.ts';
import type { OtherRow } from './table.ts';
import type { RunEnv } from './types.ts';

const MEASUREMENT = 'idle memory (RSS)';
const SETTLE_MS = 2000;

/** The references measured idle: the bare Node server and nginx with one worker. */
const REFERENCES: Reference[] = [
  { server: 'node:http hello', start: (env) => startNodeApp(env) },
  { server: 'nginx (master + 1 worker)', start: (env) => startNginx(env, 'idle', returnSite(200)) },
];

function row(server: string, junction: boolean, rss: TreeRss): OtherRow {
  const mib = (b: number) => (b / 1024 ** 2).toFixed(0);
  const note = rss.processes === 1 ? '1 process'
    : `${rss.processes} processes: ${rss.each.map((e) => `${e.name} ${mib(e.bytes)}`).join(' + ')} MiB`;
  return { measurement: MEASUREMENT, server, junction, value: rss.bytes, unit: 'MiB', note };
}

/** Measure Junction (with an empty configuration) and the references, idle. */
export async function measureMemory(env: RunEnv, junction: () => Promise<JunctionDaemon>): Promise<OtherRow[]> {
  const rows: OtherRow[] = [];
  try {
    const j = await junction();
    await j.configure(EMPTY_CONFIG);
    await sleep(SETTLE_MS);
    rows.push(row('Junction (empty config)', true, j.rss()));
  } catch (e) {
    rows.push({ measurement: MEASUREMENT, server: 'Junction (empty config)', junction: true, unit: 'MiB', na: (e as Error).message });
  }
  for (const ref of REFERENCES) {
    let running;
    try {
      running = await ref.start(env, {});
      await sleep(SETTLE_MS);
      rows.push(row(ref.server, false, treeRss(running.pid)));
    } catch (e) {
      rows.push({ measurement: MEASUREMENT, server: ref.server, junction: false, unit: 'MiB', na: (e as Error).message });
    } finally {
      await running?.stop();
    }
  }
  return rows;
}
