// A sweep's results as one table: a row per run (budget, method, size, seed) with its size, cost, the
// shape of its sparse layer (N, h, k, query norm) and its final validation numbers, including the
// expert usage of the final evaluation, read from each run's summary.json (planned numbers for runs
// not finished). Written as summary.csv (full precision, for analysis) and summary.md (rounded, for
// reading). Sweeps with several seeds also get a row per point (budget, method, size) with the mean
// and the spread across seeds (seed-points.ts).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readJsonFile } from '../run/run-folder.js';
import type { TrainConfig } from '../config/schema.js';
import type { RunSummary } from '../run/summary.js';
import { RUN_FILES } from '../run/run-folder.js';
import { formatCount } from '../train/flops.js';
import type { SweepRecord } from './plan.js';
import type { RunStatus } from './run-sweep.js';
import { csvCell } from './csv.js';
import { ffwFacts, NO_FACTS, type FfwFacts } from './ffw-facts.js';
import { hasSeeds, pointsMarkdown, seedPoints } from './seed-points.js';

export interface SweepRow extends FfwFacts {
  budget: number;
  budget_label: string;
  method: string;
  size: string;
  /** train.seed of the run (null when neither its summary nor its config is at hand). */
  seed: number | null;
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
  /**
   * Expert usage over the final evaluation (summary.json's usage; the mean over the sparse layers
   * when there are several): fraction of experts retrieved, KL to uniform, fraction never retrieved.
   */
  usage: number | null;
  unevenness: number | null;
  dead_fraction: number | null;
  /** done, or why there are no results: failed, interrupted, unfinished, not run. */
  status: string;
  /** The run folder, relative to the sweep folder. */
  run: string;
}

export const CSV_COLUMNS: readonly (keyof SweepRow)[] = [
  'budget',
  'method',
  'size',
  'n_experts',
  'h',
  'k',
  'query_norm',
  'seed',
  'params_total',
  'params_active',
  'flops_per_token',
  'steps',
  'tokens',
  'val_loss',
  'val_ppl',
  'val_bpb',
  'usage',
  'unevenness',
  'dead_fraction',
  'wall_seconds',
  'tokens_per_s',
  'status',
  'run',
];

/** The mean over the layers of a usage metric (null when no layer has it). */
function layerMean(values: readonly (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v));
  return known.length === 0 ? null : known.reduce((a, b) => a + b, 0) / known.length;
}

/** The usage cells of a summary (null for dense models and summaries older than the field). */
export function usageCells(s: Pick<RunSummary, 'usage'>): Pick<SweepRow, 'usage' | 'unevenness' | 'dead_fraction'> {
  const layers = s.usage ?? [];
  if (layers.length === 0) return { usage: null, unevenness: null, dead_fraction: null };
  return {
    usage: layerMean(layers.map((l) => l.usage)),
    unevenness: layerMean(layers.map((l) => l.unevenness)),
    dead_fraction: layerMean(layers.map((l) => l.dead_fraction)),
  };
}

/**
 * The rows of the sweep in `dir`, in plan order. `statuses` overrides the status of unfinished runs;
 * `configs` (each run's resolved train config) gives the sparse layer's shape and planned seed.
 */
export function collectRows(
  dir: string,
  record: SweepRecord,
  statuses: ReadonlyMap<string, RunStatus> = new Map(),
  configs: ReadonlyMap<string, Pick<TrainConfig, 'model' | 'train'>> = new Map(),
): SweepRow[] {
  return record.runs.map((run) => {
    const runDir = join(resolve(dir), run.dir);
    const summaryPath = join(runDir, RUN_FILES.summary);
    const config = configs.get(run.id);
    const base = {
      budget: run.budget,
      budget_label: run.budgetLabel,
      method: run.method,
      size: run.size,
      ...(config ? ffwFacts(config) : NO_FACTS),
      seed: run.seed ?? config?.train.seed ?? null,
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
        seed: s.seed,
        params_total: s.params_total,
        params_active: s.params_active_per_token,
        flops_per_token: s.flops_per_token,
        steps: s.steps,
        tokens: s.tokens,
        val_loss: s.val_loss,
        val_ppl: s.val_ppl,
        val_bpb: s.val_bpb,
        ...usageCells(s),
        wall_seconds: s.wall_seconds,
        tokens_per_s: s.tokens_per_s,
        status: 'done',
      };
    }
    const given = statuses.get(run.id);
    const status = given && given !== 'done' && given !== 'skipped' ? given : existsSync(runDir) ? 'unfinished' : 'not run';
    return {
      ...base,
      tokens: null,
      val_loss: null,
      val_ppl: null,
      val_bpb: null,
      usage: null,
      unevenness: null,
      dead_fraction: null,
      wall_seconds: null,
      tokens_per_s: null,
      status,
    };
  });
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

const cell = (v: number | string | null) => (v === null ? '' : String(v));
/** A fraction as a percentage, e.g. 0.9712 -> `97.1%`. */
export const percent = (v: number | null, digits = 1) => (v === null ? '' : `${(100 * v).toFixed(digits)}%`);

/** The table cells of a row, rounded for reading. */
export function displayRow(r: SweepRow, best: boolean): string[] {
  const loss = r.val_loss === null ? r.status : fixed(r.val_loss, 4);
  return [
    r.budget_label,
    r.method,
    r.size,
    r.n_experts === null ? '' : r.n_experts.toLocaleString('en-US'),
    cell(r.h),
    cell(r.k),
    cell(r.query_norm),
    cell(r.seed),
    formatCount(r.params_total),
    formatCount(r.params_active),
    formatCount(r.flops_per_token),
    r.steps.toLocaleString('en-US'),
    r.tokens === null ? '' : formatCount(r.tokens),
    best ? `**${loss}**` : loss,
    fixed(r.val_ppl, 3),
    fixed(r.val_bpb, 4),
    percent(r.usage),
    fixed(r.unevenness, 4),
    percent(r.dead_fraction),
  ];
}

export const DISPLAY_COLUMNS = [
  'budget',
  'method',
  'size',
  'N',
  'h',
  'k',
  'query norm',
  'seed',
  'params total',
  'params active',
  'FLOPs/token',
  'steps',
  'tokens',
  'val_loss',
  'val_ppl',
  'val_bpb',
  'usage',
  'KL',
  'dead',
];
/** The columns of text (left-aligned). */
export const TEXT_COLUMNS = new Set(['budget', 'method', 'size', 'query norm']);

/**
 * summary.md: the table of runs, the table of points across seeds (sweeps with seeds), the plot.
 * `plot` names the plot's file and caption (default the isoFLOP curves).
 */
export function toMarkdown(rows: readonly SweepRow[], meta: { name: string; source: string; description: string }, plot = { file: 'isoflop.png', caption: 'isoFLOP curves' }): string {
  const best = bestRows(rows);
  const done = rows.filter((r) => r.status === 'done').length;
  const lines = [
    `# Sweep ${meta.name}`,
    '',
    `${meta.description ? `${meta.description}. ` : ''}From ${meta.source}; ${done} of ${rows.length} runs finished.`,
    '',
    `| ${DISPLAY_COLUMNS.join(' | ')} |`,
    `|${DISPLAY_COLUMNS.map((c) => (TEXT_COLUMNS.has(c) ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${displayRow(r, best.has(r)).join(' | ')} |`),
    '',
    'Params active: parameters used per token. FLOPs/token: forward, a multiply-add counts 2 (a training step costs 3x). ' +
      'val_loss in nats per token, val_bpb in bits per byte. Bold: the lowest validation loss of each method at each budget (its compute-optimal size). ' +
      'N: experts (PEER, MoE) or memories (PKM), h heads, k per head (per token for MoE). usage, KL, dead: over the final evaluation, ' +
      'the fraction of experts retrieved, the KL divergence of their router weight to uniform (nats; Table 2 of the PEER paper) and the fraction never retrieved.',
    '',
    ...(hasSeeds(rows)
      ? [
          '## Across seeds',
          '',
          pointsMarkdown(seedPoints(rows)),
          '',
          'Each point (budget, method, size) over its finished seeds: mean ± sample standard deviation (min–max).',
          '',
        ]
      : []),
    `![${plot.caption}](${plot.file})`,
    '',
  ];
  return lines.join('\n');
}
