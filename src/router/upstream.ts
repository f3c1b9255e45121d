/**
 * `upstreams` (spec/router.md §5): a group of proxy servers chosen by smooth
 * weighted round robin, nginx style. Weights (0–1000000, fractions allowed)
 * are scaled to integers; state starts afresh with every configuration.
 * No servers or only zero weights → 502.
 */
import type { Request } from './request.ts';
import type { Handler } from './action.ts';
import { proxyTarget, type ProxyTarget } from './actions/proxy.ts';

/** A compiled upstream group (a pass target). */
export class UpstreamHandler implements Handler {
  readonly servers: ProxyTarget[];
  private readonly weights: number[];
  private readonly current: number[];

  constructor(servers: ProxyTarget[], weights: number[]) {
    this.servers = servers;
    const sum = weights.reduce((a, b) => a + b, 0);
    let k = sum > 0 ? (2147483647 / 2) / sum : 0;
    if (!Number.isFinite(k)) k = 1;
    this.weights = weights.map((w) => {
      const v = k * w;
      return v > 1 || v === 0 ? Math.round(v) : 1;
    });
    this.current = weights.map(() => 0);
  }

  /** Index of the next server, or -1 when none can be chosen. */
  pick(): number {
    const w = this.weights;
    const cur = this.current;
    let total = 0;
    let best = -1;
    for (let i = 0; i < w.length; i++) {
      cur[i] += w[i];
      total += w[i];
      if (best < 0 || cur[i] > cur[best]) best = i;
    }
    if (best < 0 || total === 0) return -1;
    cur[best] -= total;
    return best;
  }

  run(r: Request): null {
    const i = this.pick();
    if (i < 0) r.res.sendError(502);
    else this.servers[i].forward(r);
    return null;
  }
}

/** Compile one upstream `{ servers: { ADDR: { weight? } } }`. @throws Error for a bad address. */
export function compileUpstream(u: Record<string, unknown>): UpstreamHandler {
  const servers = (u.servers ?? {}) as Record<string, { weight?: number }>;
  const names = Object.keys(servers);
  return new UpstreamHandler(
    names.map((n) => proxyTarget(n)),
    names.map((n) => (typeof servers[n]?.weight === 'number' ? servers[n].weight! : 1)),
  );
}
