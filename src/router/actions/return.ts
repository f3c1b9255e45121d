/**
 * `return` (spec/router.md §4.3): 400–599 send the error page; any other code
 * 0–999 an empty response, with `Location` (Unit's encoding) when configured.
 */
import type { Request } from '../request.ts';
import type { Handler } from '../action.ts';
import { compileTemplate, type Template } from '../variables.ts';
import { encodeLocation } from '../uri.ts';

/** A compiled `return` action. */
export class ReturnHandler implements Handler {
  readonly status: number;
  readonly location: Template | null;
  private readonly fixedFields: string[] | null;

  constructor(status: number, location: Template | null) {
    this.status = status;
    this.location = location;
    this.fixedFields = location === null ? [] : location.constant !== null
      ? ['Location', encodeLocation(location.constant)] : null;
  }

  run(r: Request): null {
    const s = this.status;
    if (s >= 400 && s <= 599) {
      r.res.sendError(s);
    } else {
      r.res.sendEmpty(s, this.fixedFields !== null ? this.fixedFields
        : ['Location', encodeLocation(this.location!.expand(r))]);
    }
    return null;
  }
}

/** Compile a `return` action (`return` 0–999, optional `location` template). */
export function compileReturn(a: Record<string, unknown>): ReturnHandler {
  const loc = a.location;
  return new ReturnHandler(a.return as number, typeof loc === 'string' ? compileTemplate(loc, 'location') : null);
}
