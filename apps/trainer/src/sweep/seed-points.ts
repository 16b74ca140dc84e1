// A sweep with several seeds: its runs grouped by point (budget, method, size), and per point the
// mean and the spread across the seeds of each result (validation loss and bits per byte, expert
// usage, unevenness, dead fraction). The spread is given both ways: the sample standard deviation
// (n - 1 in the denominator; none for one seed) and the range min..max.
import { csvCell } from './csv.js';
import type { FfwFacts } from './ffw-facts.js';
import type { SweepRow } from './summary-table.js';

export interface Spread {
  mean: number;
  /** Sample standard deviation; null with one value. */
  std: number | null;
  min: number;
  max: number;
  /** Values the numbers are of. */
  n: number;
}

export interface SweepPoint extends FfwFacts {
  budget: number;
  budget_label: string;
  method: string;
  size: string;
  params_active: number;
  params_total: number;
  /** Seeds of the point's runs (in plan order); finished or not. */
  seeds: (number | null)[];
  /** Finished runs. */
  done: number;
  val_loss: Spread | null;
  val_bpb: Spread | null;
  usage: Spread | null;
  unevenness: Spread | null;
  dead_fraction: Spread | null;
}

/** Mean, sample standard deviation and range of `values` (nulls skipped); null when none is left. */
export function spread(values: readonly (number | null)[]): Spread | null {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (xs.length === 0) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length < 2 ? null : Math.sqrt(xs.reduce((a, x) => a + (x - mean) * (x - mean), 0) / (xs.length - 1));
  return { mean, std, min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** The rows grouped by (budget, method, size), in the order the points first appear. */
export function seedPoints(rows: readonly SweepRow[]): SweepPoint[] {
  const groups = new Map<string, SweepRow[]>();
  for (const r of rows) {
    const key = `${r.budget_label}\u0000${r.method}\u0000${r.size}`;
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()].map((g) => {
    const first = g[0]!;
    const done = g.filter((r) => r.status === 'done');
    return {
      budget: first.budget,
      budget_label: first.budget_label,
      method: first.method,
      size: first.size,
      n_experts: first.n_experts,
      h: first.h,
      k: first.k,
      query_norm: first.query_norm,
      params_active: first.params_active,
      params_total: first.params_total,
      seeds: g.map((r) => r.seed),
      done: done.length,
      val_loss: spread(done.map((r) => r.val_loss)),
      val_bpb: spread(done.map((r) => r.val_bpb)),
      usage: spread(done.map((r) => r.usage)),
      unevenness: spread(done.map((r) => r.unevenness)),
      dead_fraction: spread(done.map((r) => r.dead_fraction)),
    };
  });
}

/** Whether some point of the rows has more than one run (a sweep with seeds). */
export function hasSeeds(rows: readonly SweepRow[]): boolean {
  return seedPoints(rows).some((p) => p.seeds.length > 1);
}

const SPREAD_FIELDS = ['val_loss', 'val_bpb', 'usage', 'unevenness', 'dead_fraction'] as const;

export const POINT_CSV_COLUMNS: readonly string[] = [
  'budget',
  'method',
  'size',
  'n_experts',
  'h',
  'k',
  'query_norm',
  'params_active',
  'seeds',
  'done',
  ...SPREAD_FIELDS.flatMap((f) => [`${f}_mean`, `${f}_std`, `${f}_min`, `${f}_max`]),
];

/** seed-points.csv: a line per point, full precision, seeds separated by spaces. */
export function pointsCsv(points: readonly SweepPoint[]): string {
  const line = (p: SweepPoint) => [
    p.budget,
    p.method,
    p.size,
    p.n_experts,
    p.h,
    p.k,
    p.query_norm,
    p.params_active,
    p.seeds.map((s) => (s === null ? '?' : String(s))).join(' '),
    p.done,
    ...SPREAD_FIELDS.flatMap((f) => {
      const s = p[f];
      return s === null ? [null, null, null, null] : [s.mean, s.std, s.min, s.max];
    }),
  ];
  return [POINT_CSV_COLUMNS.join(','), ...points.map((p) => line(p).map(csvCell).join(','))].join('\n') + '\n';
}

/** `mean ± std (min–max)` rounded; the mean alone for one value; empty for none. */
export function formatSpread(s: Spread | null, digits: number, scale = 1): string {
  if (s === null) return '';
  const f = (v: number) => (scale * v).toFixed(digits);
  if (s.n < 2) return f(s.mean);
  return `${f(s.mean)} ± ${f(s.std!)} (${f(s.min)}–${f(s.max)})`;
}

export const POINT_DISPLAY_COLUMNS = ['budget', 'method', 'size', 'N', 'h', 'k', 'query norm', 'seeds done', 'val_loss', 'val_bpb', 'usage (%)', 'KL', 'dead (%)'];

/** The columns of text (left-aligned) of the points table. */
export const POINT_TEXT_COLUMNS = new Set(['budget', 'method', 'size', 'query norm']);

/** The table cells of a point, rounded for reading. */
export function pointCells(p: SweepPoint): string[] {
  return [
    p.budget_label,
    p.method,
    p.size,
    p.n_experts === null ? '' : p.n_experts.toLocaleString('en-US'),
    p.h === null ? '' : String(p.h),
    p.k === null ? '' : String(p.k),
    p.query_norm ?? '',
    `${p.done} of ${p.seeds.length}`,
    formatSpread(p.val_loss, 4),
    formatSpread(p.val_bpb, 4),
    formatSpread(p.usage, 1, 100),
    formatSpread(p.unevenness, 4),
    formatSpread(p.dead_fraction, 1, 100),
  ];
}

/** The Markdown table of the points: mean ± sample std (min–max) across seeds. */
export function pointsMarkdown(points: readonly SweepPoint[]): string {
  return [
    `| ${POINT_DISPLAY_COLUMNS.join(' | ')} |`,
    `|${POINT_DISPLAY_COLUMNS.map((c) => (POINT_TEXT_COLUMNS.has(c) ? '---' : '---:')).join('|')}|`,
    ...points.map((p) => `| ${pointCells(p).join(' | ')} |`),
  ].join('\n');
}
