/**
 * Routes (spec/router.md §3.1): an ordered list of steps; the first step whose
 * `match` holds selects its action; no match → 404.
 */
import type { Request } from './request.ts';
import { enterAction, type Action, type Handler } from './action.ts';
import type { StepMatch } from './match.ts';

export interface Step { match: StepMatch | null; action: Action }

/**
 * A compiled route (a Handler): the first matching step's action runs, else 404.
 * Steps are filled in after creation so routes can refer to each other.
 */
export class Route implements Handler {
  /** `routes` or `routes/NAME`, for log lines. */
  readonly name: string;
  steps: Step[] = [];

  constructor(name: string) { this.name = name; }

  run(r: Request): Handler | null {
    const steps = this.steps;
    const trace = r.table.settings.logRoute;
    for (let i = 0; i < steps.length; i++) {
      const s = steps[i];
      if (s.match === null || s.match.test(r)) {
        if (trace) r.conn.log.notice(`"${this.name}/${i}" selected`);
        return enterAction(r, s.action);
      }
      if (trace) r.conn.log.info(`"${this.name}/${i}" discarded`);
    }
    r.res.sendError(404);
    return null;
  }
}
