/**
 * The results as tables: one for the load scenarios (req/s, p99, transfer,
 * and Junction's req/s divided by each reference's), one for the other
 * measurements (idle memory, time to apply a configuration). Plain aligned
 * text for a terminal, or Markdown for a README.
 */
import type { WrkResult } from './wrk.ts';

/** One server's result in one load scenario; `na` holds the reason when it could not be measured. */
export interface LoadRow {
  scenario: string;
  server: string;
  junction: boolean;
  result?: WrkResult;
  /** Lowest and highest req/s over the rounds, when there were several. */
  range?: [number, number];
  na?: string;
}

/** One server's value in a measurement that is not a load run (lower is better). */
export interface OtherRow {
  measurement: string;
  server: string;
  junction: boolean;
  value?: number;
  unit: 'MiB' | 'ms';
  note?: string;
  na?: string;
}

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function ms(v: number): string {
  if (!Number.isFinite(v)) return '?';
  return v < 10 ? `${v.toFixed(2)} ms` : v < 100 ? `${v.toFixed(1)} ms` : `${int.format(v)} ms`;
}

function us(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  return v < 100 ? `${v.toFixed(1)} µs` : `${int.format(v)} µs`;
}

function rate(bytesPerSec: number): string {
  if (!Number.isFinite(bytesPerSec)) return '?';
  const mib = bytesPerSec / 1024 ** 2;
  return mib >= 1024 ? `${(mib / 1024).toFixed(2)} GiB/s` : `${mib.toFixed(1)} MiB/s`;
}

function ratio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
}

function notes(r: WrkResult, range?: [number, number]): string {
  const n: string[] = [];
  if (range) n.push(`rounds ${int.format(range[0])}–${int.format(range[1])} req/s`);
  if (r.non2xx) n.push(`${int.format(r.non2xx)} non-2xx/3xx`);
  if (r.socketErrors) n.push(`${int.format(r.socketErrors)} socket errors`);
  return n.join(', ');
}

/** Rows of cells for the load table; the header row first. */
export function loadCells(rows: LoadRow[]): string[][] {
  const out = [['scenario', 'server', 'req/s', 'p99', 'transfer', 'CPU/req', 'Junction/ref', 'CPU ref/Junction', 'notes']];
  for (const row of rows) {
    const j = rows.find((r) => r.scenario === row.scenario && r.junction)?.result;
    if (!row.result) {
      out.push([row.scenario, row.server, '—', '—', '—', '—', '', '', `n/a (${row.na ?? 'not measured'})`]);
      continue;
    }
    const r = row.result;
    const rel = row.junction ? '' : j ? ratio(j.rps / r.rps) : '—';
    const cpuRel = row.junction ? '' : j?.cpuPerRequest !== undefined && r.cpuPerRequest !== undefined
      ? ratio(r.cpuPerRequest / j.cpuPerRequest) : '—';
    out.push([row.scenario, row.server, int.format(r.rps), ms(r.p99), rate(r.transferPerSec), us(r.cpuPerRequest), rel, cpuRel,
      notes(r, row.range)]);
  }
  return out;
}

/** Rows of cells for the other measurements; the header row first. */
export function otherCells(rows: OtherRow[]): string[][] {
  const out = [['measurement', 'server', 'value', 'Junction/ref', 'notes']];
  for (const row of rows) {
    if (row.value === undefined) {
      out.push([row.measurement, row.server, '—', '', `n/a (${row.na ?? 'not measured'})`]);
      continue;
    }
    const j = rows.find((r) => r.measurement === row.measurement && r.junction)?.value;
    const value = row.unit === 'MiB' ? `${(row.value / 1024 ** 2).toFixed(1)} MiB` : ms(row.value);
    const rel = row.junction ? '' : j !== undefined ? ratio(j / row.value) : '—';
    out.push([row.measurement, row.server, value, rel, row.note ?? '']);
  }
  return out;
}

const NUMERIC = /^([\d,.]+( ms| µs| MiB| MiB\/s| GiB\/s|×)?|—|\?)$/;

/** Render cells as aligned text (numbers right-aligned) or as a Markdown table. */
export function render(cells: string[][], markdown: boolean): string {
  if (cells.length === 0) return '';
  const widths = cells[0].map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  const right = cells[0].map((_, c) => cells.slice(1).every((row) => row[c] === '' || NUMERIC.test(row[c])));
  if (markdown) {
    const line = (row: string[]) => `| ${row.map((v) => v.replace(/\|/g, '\\|')).join(' | ')} |`;
    const sep = `|${right.map((r) => (r ? '---:' : '---')).map((s) => `${s}|`).join('')}`;
    return [line(cells[0]), sep, ...cells.slice(1).map(line)].join('\n') + '\n';
  }
  const line = (row: string[]) => row.map((v, c) => (right[c] ? v.padStart(widths[c]) : v.padEnd(widths[c]))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n') + '\n';
}
