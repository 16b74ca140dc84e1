// A sweep's results as one table: a row per run (budget, method, size) with its size, cost and final
// validation numbers, read from each run's summary.json (planned numbers for runs not finished).
// Written as summary.csv (full precision, for analysis) and summary.md (rounded, for reading).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readJsonFile } from '../run/run-folder.js';
import type { RunSummary } from '../run/summary.js';
import { RUN_FILES } from '../run/run-folder.js';
import { formatCount } from '../train/flops.js';
import type { SweepRecord } from './plan.js';
import type { RunStatus } from './run-sweep.js';

export interface SweepRow {
  budget: number;
  budget_label: string;
  method: string;
  size: string;
  params_total: number;
  params_active: number;
  flops_per_token: number;
  steps: number;
  tokens: number | null;
  val_loss: number | null;
  val_ppl: number | null;
  val_bpb: number | null;
  wall_seconds: number | null;
  tokens_per_s: number | null;
  /** done, or why there are no results: failed, interrupted, unfinished, not run. */
  status: string;
  /** The run folder, relative to the sweep folder. */
  run: string;
}

export const CSV_COLUMNS: readonly (keyof SweepRow)[] = [
  'budget',
  'method',
  'size',
  'params_total',
  'params_active',
  'flops_per_token',
  'steps',
  'tokens',
  'val_loss',
  'val_ppl',
  'val_bpb',
  'wall_seconds',
  'tokens_per_s',
  'status',
  'run',
];

/** The rows of the sweep in `dir`, in plan order. `statuses` overrides the status of unfinished runs. */
export function collectRows(dir: string, record: SweepRecord, statuses: ReadonlyMap<string, RunStatus> = new Map()): SweepRow[] {
  return record.runs.map((run) => {
    const runDir = join(resolve(dir), run.dir);
    const summaryPath = join(runDir, RUN_FILES.summary);
    const base = {
      budget: run.budget,
      budget_label: run.budgetLabel,
      method: run.method,
      size: run.size,
      params_total: run.paramsTotal,
      params_active: run.paramsActive,
      flops_per_token: run.flopsPerToken,
      steps: run.steps,
      run: run.dir,
    };
    if (existsSync(summaryPath)) {
      const s = readJsonFile<RunSummary>(summaryPath, 'run summary');
      return {
        ...base,
        params_total: s.params_total,
        params_active: s.params_active_per_token,
        flops_per_token: s.flops_per_token,
        steps: s.steps,
        tokens: s.tokens,
        val_loss: s.val_loss,
        val_ppl: s.val_ppl,
        val_bpb: s.val_bpb,
        wall_seconds: s.wall_seconds,
        tokens_per_s: s.tokens_per_s,
        status: 'done',
      };
    }
    const given = statuses.get(run.id);
    const status = given && given !== 'done' && given !== 'skipped' ? given : existsSync(runDir) ? 'unfinished' : 'not run';
    return { ...base, tokens: null, val_loss: null, val_ppl: null, val_bpb: null, wall_seconds: null, tokens_per_s: null, status };
  });
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const text = String(v);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(rows: readonly SweepRow[]): string {
  return [CSV_COLUMNS.join(','), ...rows.map((r) => CSV_COLUMNS.map((c) => csvCell(r[c])).join(','))].join('\n') + '\n';
}

/** For each (budget, method), the row with the lowest validation loss: the compute-optimal size. */
export function bestRows(rows: readonly SweepRow[]): Set<SweepRow> {
  const best = new Map<string, SweepRow>();
  for (const r of rows) {
    if (r.val_loss === null) continue;
    const key = `${r.budget_label}\u0000${r.method}`;
    const prev = best.get(key);
    if (!prev || r.val_loss < prev.val_loss!) best.set(key, r);
  }
  return new Set(best.values());
}

const fixed = (v: number | null, digits: number) => (v === null ? '' : v.toFixed(digits));

/** The table cells of a row, rounded for reading. */
export function displayRow(r: SweepRow, best: boolean): string[] {
  const loss = r.val_loss === null ? r.status : fixed(r.val_loss, 4);
  return [
    r.budget_label,
    r.method,
    r.size,
    formatCount(r.params_total),
    formatCount(r.params_active),
    formatCount(r.flops_per_token),
    r.steps.toLocaleString('en-US'),
    r.tokens === null ? '' : formatCount(r.tokens),
    best ? `**${loss}**` : loss,
    fixed(r.val_ppl, 3),
    fixed(r.val_bpb, 4),
  ];
}

export const DISPLAY_COLUMNS = ['budget', 'method', 'size', 'params total', 'params active', 'FLOPs/token', 'steps', 'tokens', 'val_loss', 'val_ppl', 'val_bpb'];

export function toMarkdown(rows: readonly SweepRow[], meta: { name: string; source: string; description: string }): string {
  const best = bestRows(rows);
  const done = rows.filter((r) => r.status === 'done').length;
  const lines = [
    `# Sweep ${meta.name}`,
    '',
    `${meta.description ? `${meta.description}. ` : ''}From ${meta.source}; ${done} of ${rows.length} runs finished.`,
    '',
    `| ${DISPLAY_COLUMNS.join(' | ')} |`,
    `|${DISPLAY_COLUMNS.map((_, i) => (i < 3 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${displayRow(r, best.has(r)).join(' | ')} |`),
    '',
    'Params active: parameters used per token. FLOPs/token: forward, a multiply-add counts 2 (a training step costs 3x). ' +
      'val_loss in nats per token, val_bpb in bits per byte. Bold: the lowest validation loss of each method at each budget (its compute-optimal size).',
    '',
    '![isoFLOP curves](isoflop.png)',
    '',
  ];
  return lines.join('\n');
}
