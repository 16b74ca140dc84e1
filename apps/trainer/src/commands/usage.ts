// peer-train usage: the paper's expert-usage metrics (Table 2) of each sparse layer of a trained
// run, over an evaluation pass: accumulate each expert's router weight z'_i (0 when never
// retrieved), normalize z = z' / |z'|_1, then
//   usage        = fraction of experts with z_i > 0
//   unevenness   = KL(z || uniform) = log N + sum_i z_i log z_i
//   top-1% share = weight of the heaviest ceil(N / 100) experts
// The numbers come from the layers' own usage statistics (startUsage / stopUsage); this command
// runs the pass, records the per-expert weights and hits, and draws the histogram.
//
// Files written into the run folder:
//   usage.json                 the metrics and histogram of each sparse layer
//   usage-weights.safetensors  blocks.<i>.weights and blocks.<i>.hits, float64 [N] per layer
//   usage.svg, usage.png       the histogram plot
import { join } from 'node:path';
import { usageHistogram, writeSafetensors, type NamedArray, type UsageHistogram } from '@peer/expert-store';
import type { SplitName } from '@peer/data';
import type { UsageReport } from '@peer/feed-forward';
import type { TransformerLM } from '@peer/model';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { writePlot, type PlotFiles } from '../plots/render.js';
import { usageHistogramSpec, type UsageBar } from '../plots/specs.js';
import { loadRun, type LoadedRun } from '../run/load-run.js';
import { openSplit } from '../run/open-data.js';
import { writeJsonAtomic } from '../run/run-folder.js';
import { evaluate } from '../train/evaluate.js';
import { sparseLayers } from '../train/expert-health.js';
import type { EvalCommandOptions } from './eval.js';

export const USAGE_FILES = {
  json: 'usage.json',
  weights: 'usage-weights.safetensors',
  plot: 'usage',
} as const;

/** The options of `eval`: a run, the data and split, and evenly spaced `batches` of it (0 or undefined: all). */
export type UsageCommandOptions = EvalCommandOptions;

export interface LayerUsage {
  /** Block index of the layer in the model. */
  block: number;
  kind: string;
  /** Number of experts (or memory slots) N. */
  count: number;
  /** Fraction of experts with non-zero accumulated router weight. */
  usage: number;
  /** KL(z || uniform) in nats. */
  unevenness: number;
  /** Fraction of experts never retrieved in the pass. */
  dead_fraction: number;
  /** Share of the total router weight held by the top 1% of experts. */
  top1_share: number;
  /** Expert retrievals counted (sum of hits). */
  retrievals: number;
  /** Sum of the accumulated router weights. */
  total_weight: number;
  histogram: UsageHistogram;
}

export interface UsageResult {
  run: string;
  /** Training step of the checkpoint measured. */
  step: number;
  corpus: string;
  split: SplitName;
  /** Tokens of the evaluation pass. */
  tokens: number;
  batches: number;
  /** Validation loss of the same pass (a check that the checkpoint is the trained one). */
  loss: number;
  layers: LayerUsage[];
  files: { json: string; weights: string; svg: string; png: string };
}

const SPLITS = ['train', 'validation', 'test'];

/** A model to measure: a loaded run's, or the one a training process holds. */
export interface UsageSubject {
  /** The run folder the files go to. */
  dir: string;
  config: TrainConfig;
  model: TransformerLM;
  /** Training step of the weights. */
  step: number;
}

export function subjectOf(loaded: LoadedRun): UsageSubject {
  return { dir: loaded.run.dir, config: loaded.record.config, model: loaded.model, step: loaded.state.step };
}

function sum(xs: Float64Array): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s;
}

/** Histogram bars of a layer for the plot (zeros and out-of-range experts are named in the subtitle). */
function barsOf(label: string, h: UsageHistogram): UsageBar[] {
  return h.counts.map((count, b) => ({ layer: label, lo: h.edges[b]!, hi: h.edges[b + 1]!, count }));
}

export function formatPercent(x: number, digits = 1): string {
  return Number.isFinite(x) ? `${(100 * x).toFixed(digits)}%` : 'n/a';
}

/** The histogram plot of `result`'s layers, written as usage.svg / usage.png into `dir`. */
export async function writeUsagePlot(dir: string, layers: readonly LayerUsage[], tokens: number): Promise<PlotFiles> {
  const bars = layers.flatMap((l) => barsOf(`block ${l.block} (${l.kind}, N = ${l.count.toLocaleString('en-US')})`, l.histogram));
  const notes = layers.map((l) => {
    const extra = [
      l.histogram.zeros > 0 ? `${l.histogram.zeros.toLocaleString('en-US')} unused` : '',
      l.histogram.below > 0 ? `${l.histogram.below.toLocaleString('en-US')} below the axis` : '',
      l.histogram.above > 0 ? `${l.histogram.above.toLocaleString('en-US')} above it` : '',
    ].filter(Boolean);
    return (
      `block ${l.block}: usage ${formatPercent(l.usage)}, unevenness ${l.unevenness.toFixed(3)}, ` +
      `top-1% share ${formatPercent(l.top1_share)}${extra.length ? ` (${extra.join(', ')})` : ''}`
    );
  });
  const subtitle = [`${tokens.toLocaleString('en-US')} tokens; dashed line: uniform share`, ...notes];
  return writePlot(dir, USAGE_FILES.plot, usageHistogramSpec(bars, subtitle));
}

/** A pass's usage reports, one per sparse layer, with the layer's block and kind. */
export interface LayerReport {
  block: number;
  kind: string;
  report: UsageReport;
}

/**
 * Runs `pass` (an evaluation) with the usage statistics of the model's sparse layers on: the one
 * way this package records usage, for `peer-train usage` and the final evaluation of `train` alike.
 */
export async function withUsage<T>(model: TransformerLM, pass: () => Promise<T>): Promise<{ result: T; reports: LayerReport[] }> {
  const layers = sparseLayers(model);
  for (const { layer } of layers) layer.startUsage!();
  const stop = () => layers.map(({ block, layer }) => ({ block, kind: layer.kind, report: layer.stopUsage!() }));
  let result: T;
  try {
    result = await pass();
  } catch (err) {
    // a failed pass must not leave the layers recording
    stop();
    throw err;
  }
  return { result, reports: stop() };
}

/** The usage metrics of one layer's report. */
export function layerUsage(block: number, kind: string, r: UsageReport): LayerUsage {
  let dead = 0;
  for (let i = 0; i < r.count; i++) if (r.hits[i] === 0) dead++;
  return {
    block,
    kind,
    count: r.count,
    usage: r.usage,
    unevenness: r.unevenness,
    dead_fraction: r.count > 0 ? dead / r.count : 0,
    top1_share: r.top1PercentShare,
    retrievals: sum(r.hits),
    total_weight: sum(r.weights),
    histogram: usageHistogram(r.weights),
  };
}

/**
 * Writes usage.json, the per-expert weights and the histogram plot of an evaluation pass's reports
 * into the subject's run folder.
 */
export async function writeUsageFiles(
  subject: UsageSubject,
  reports: readonly LayerReport[],
  pass: { corpus: string; split: SplitName; tokens: number; batches: number; loss: number },
): Promise<UsageResult> {
  const results = reports.map(({ block, kind, report }) => layerUsage(block, kind, report));
  const dir = subject.dir;
  const arrays: NamedArray[] = reports.flatMap(({ block, report }) => [
    { name: `blocks.${block}.weights`, dtype: 'F64' as const, shape: [report.count], data: report.weights },
    { name: `blocks.${block}.hits`, dtype: 'F64' as const, shape: [report.count], data: report.hits },
  ]);
  const weightsPath = join(dir, USAGE_FILES.weights);
  writeSafetensors(weightsPath, arrays, { step: String(subject.step), split: pass.split, tokens: String(pass.tokens) });
  const plot = await writeUsagePlot(dir, results, pass.tokens);
  const result: UsageResult = {
    run: dir,
    step: subject.step,
    corpus: pass.corpus,
    split: pass.split,
    tokens: pass.tokens,
    batches: pass.batches,
    loss: pass.loss,
    layers: results,
    files: { json: join(dir, USAGE_FILES.json), weights: weightsPath, svg: plot.svgPath, png: plot.pngPath },
  };
  writeJsonAtomic(result.files.json, result);
  return result;
}

/**
 * Runs one evaluation pass of the model with usage statistics on, writes usage.json, the weights
 * file and the plot into the run folder. The model stays loaded (the caller disposes it).
 */
export async function measureUsage(
  subject: UsageSubject,
  options: { data?: string; split?: SplitName; batches?: number; batchSize?: number; log?: (line: string) => void },
): Promise<UsageResult> {
  const { config } = subject;
  if (sparseLayers(subject.model).length === 0) {
    throw new UsageError(`${subject.dir}: the model has no sparse layer (ffw ${config.model.ffw.kind}): there is no expert usage to measure`);
  }
  const split = options.split ?? 'validation';
  const data = await openSplit(config.data, split, { corpus: options.data, log: options.log });
  let pass;
  try {
    pass = await withUsage(subject.model, () =>
      evaluate(subject.model, data.file, {
        batchSize: options.batchSize ?? config.data.batchSize,
        seqLen: config.data.seqLen,
        maxBatches: options.batches ?? 0,
        tokenizer: data.tokenizer,
        vocabSize: config.model.vocabSize,
      }),
    );
  } finally {
    data.file.close();
  }
  const { result: evalResult, reports } = pass;
  return writeUsageFiles(subject, reports, { corpus: options.data ?? config.data.corpus, split, tokens: evalResult.tokens, batches: evalResult.batches, loss: evalResult.loss });
}

/** The metrics as a plain-text table. */
export function formatUsageTable(result: UsageResult): string {
  const header = ['block', 'kind', 'experts', 'usage', 'unevenness', 'top-1% share', 'retrievals'];
  const rows = result.layers.map((l) => [
    String(l.block),
    l.kind,
    l.count.toLocaleString('en-US'),
    formatPercent(l.usage, 2),
    Number.isFinite(l.unevenness) ? l.unevenness.toFixed(4) : 'n/a',
    formatPercent(l.top1_share, 2),
    l.retrievals.toLocaleString('en-US'),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [
    `${result.corpus} ${result.split}, ${result.tokens.toLocaleString('en-US')} tokens at step ${result.step} (loss ${result.loss.toFixed(4)})`,
    line(header),
    ...rows.map(line),
  ].join('\n');
}

export async function usageCommand(options: UsageCommandOptions): Promise<UsageResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const split = options.split ?? 'validation';
  if (!SPLITS.includes(split)) throw new UsageError(`--split must be train, validation or test, got '${split}'`);
  const loaded = await loadRun(options.run, { backend: options.backend, threads: options.threads });
  try {
    const result = await measureUsage(subjectOf(loaded), { data: options.data, split: split as SplitName, batches: options.batches, batchSize: options.batchSize, log });
    if (options.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(`${formatUsageTable(result)}\n`);
      process.stdout.write(`plot: ${result.files.png} (and .svg); per-expert weights: ${result.files.weights}\n`);
    }
    return result;
  } finally {
    loaded.model.dispose();
  }
}
