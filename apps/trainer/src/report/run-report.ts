// The report of one run: report.html (self-contained) with the loss curves (train + validation),
// learning rate, throughput (tokens/s, MFU), expert health while training and expert usage of the
// sparse layers, the summary and the config; the plots also as loss|lr|throughput|health|usage
// .svg/.png next to it, in the run folder.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { TransformerLM } from '@peer/model';
import { formatPercent, measureUsage, subjectOf, USAGE_FILES, writeUsagePlot, type UsageResult } from '../commands/usage.js';
import { writePlot, type PlotFiles } from '../plots/render.js';
import { expertHealthSpec, learningRateSpec, lossCurveSpec, throughputSpec, type MetricPoint } from '../plots/specs.js';
import { loadRun } from '../run/load-run.js';
import { readRunRecord, type RunRecord } from '../run/run-record.js';
import { readJsonFile, RunFolder } from '../run/run-folder.js';
import type { RunSummary } from '../run/summary.js';
import { formatCount } from '../train/flops.js';
import { formatDuration } from '../train/progress.js';
import { escapeHtml, htmlFacts, htmlFigure, htmlPage, htmlTable, type Cell, type PageSection } from './html.js';

export const REPORT_FILE = 'report.html';

export interface RunReportOptions {
  /**
   * Measure expert usage when the model has sparse layers and usage.json is missing or older than
   * the checkpoint (an evaluation pass; default true). false: include an existing usage.json only.
   */
  computeUsage?: boolean;
  /** Batches of that pass (default: the run's train.evalBatches; 0 = whole split). */
  usageBatches?: number;
  /**
   * The run's model, already in memory (the train command's, at the end of training): usage is
   * measured on it instead of loading the checkpoint again.
   */
  model?: TransformerLM;
  backend?: string;
  /** Threads of the wasm engine (default: the run's engine.threads, else every core). */
  threads?: number;
  log?: (line: string) => void;
}

export interface ReportResult {
  htmlPath: string;
  plots: PlotFiles[];
}

const fixed = (x: number | null | undefined, digits: number) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

function summaryFacts(s: RunSummary): [string, Cell][] {
  return [
    ['feed-forward', s.ffw],
    ['parameters', `${formatCount(s.params_total)} total, ${formatCount(s.params_active_per_token)} active per token (${formatCount(s.params_embedding)} embedding)`],
    ['FLOPs per token', `${formatCount(s.flops_per_token)} forward (training: 3x)`],
    ['trained', `${s.steps.toLocaleString('en-US')} steps, ${formatCount(s.tokens)} tokens, ${s.flops.toExponential(3)} FLOPs`],
    ['validation loss', fixed(s.val_loss, 4)],
    ['validation perplexity', fixed(s.val_ppl, 3)],
    ['validation bits per byte', fixed(s.val_bpb, 4)],
    ['validation tokens', s.val_tokens.toLocaleString('en-US')],
    ['throughput', `${Math.round(s.tokens_per_s).toLocaleString('en-US')} tokens/s${s.mfu === null ? '' : `, MFU ${formatPercent(s.mfu)}`}`],
    ['wall time', formatDuration(s.wall_seconds)],
    ['backend', s.backend],
    ['seed', s.seed],
    ['finished', s.finished_at],
  ];
}

function usageSection(u: UsageResult, plot: PlotFiles): string {
  const header = ['block', 'kind', 'experts', 'usage', 'unevenness (KL)', 'top-1% share', 'retrievals'];
  const rows = u.layers.map((l) => [
    l.block,
    l.kind,
    l.count.toLocaleString('en-US'),
    formatPercent(l.usage, 2),
    fixed(l.unevenness, 4),
    formatPercent(l.top1_share, 2),
    l.retrievals.toLocaleString('en-US'),
  ]);
  return [
    `<p>Over ${u.tokens.toLocaleString('en-US')} tokens of the ${escapeHtml(u.corpus)} ${escapeHtml(u.split)} split, checkpoint of step ${u.step}. ` +
      'Usage: share of experts given any router weight; unevenness: KL divergence of the normalized router weight to uniform (0 = perfectly even).</p>',
    htmlTable(header, rows, new Set(['experts', 'usage', 'unevenness (KL)', 'top-1% share', 'retrievals'])),
    htmlFigure(plot, 'histogram of the experts\u2019 share of router weight (1 = uniform share)'),
  ].join('\n');
}

function readUsage(run: RunFolder): UsageResult | undefined {
  const path = join(run.dir, USAGE_FILES.json);
  if (!existsSync(path)) return undefined;
  const u = readJsonFile<UsageResult>(path, 'usage file');
  return Array.isArray(u?.layers) ? u : undefined;
}

/** Writes report.html and the plots of the run in `dir`. */
export async function writeRunReport(dir: string, options: RunReportOptions = {}): Promise<ReportResult> {
  const run = RunFolder.open(dir, 'report');
  const record: RunRecord = readRunRecord(run);
  const metrics = run.readMetrics() as MetricPoint[];
  const summaryPath = run.path('summary');
  const summary = existsSync(summaryPath) ? readJsonFile<RunSummary>(summaryPath, 'run summary') : undefined;
  const { config } = record;
  const sparse = config.model.ffw.kind !== 'dense';

  // expert usage: recorded, or measured now
  let usage = readUsage(run);
  const checkpointStep = summary?.steps ?? metrics.reduce((m, r) => Math.max(m, r.step), 0);
  const stale = usage !== undefined && usage.step < checkpointStep;
  let usageNote = '';
  if (sparse && (usage === undefined || stale) && (options.computeUsage ?? true)) {
    const batches = options.usageBatches ?? config.train.evalBatches;
    if (options.model) {
      options.log?.('report: measuring expert usage');
      usage = await measureUsage({ dir: run.dir, config, model: options.model, step: checkpointStep }, { batches, log: options.log });
    } else if (run.hasCheckpoint()) {
      options.log?.(`report: measuring expert usage (${usage ? 'usage.json is older than the checkpoint' : 'no usage.json yet'})`);
      const loaded = await loadRun(run.dir, { backend: options.backend, threads: options.threads, flag: 'report' });
      try {
        usage = await measureUsage(subjectOf(loaded), { batches, log: options.log });
      } finally {
        loaded.model.dispose();
      }
    } else {
      usageNote = 'The run has no checkpoint yet: expert usage cannot be measured.';
    }
  } else if (sparse && usage === undefined) {
    usageNote = 'Expert usage was not measured (run peer-train usage --run DIR, on any engine but webgpu).';
  } else if (stale) {
    usageNote = `usage.json was measured at step ${usage!.step}, before the last checkpoint (run peer-train usage again).`;
  }

  const plots: PlotFiles[] = [];
  const title = `${record.name}: ${config.model.ffw.kind}`;
  const loss = await writePlot(run.dir, 'loss', lossCurveSpec(metrics, `${title}: loss`));
  const lr = await writePlot(run.dir, 'lr', learningRateSpec(metrics, `${title}: learning rate`));
  const speed = await writePlot(run.dir, 'throughput', throughputSpec(metrics, `${title}: throughput`));
  plots.push(loss, lr, speed);
  const healthRecords = metrics.filter((m) => m.kind === 'health');
  const healthPlot = healthRecords.length > 0 ? await writePlot(run.dir, 'health', expertHealthSpec(metrics, `${title}: expert health`)) : undefined;
  if (healthPlot) plots.push(healthPlot);
  const usagePlot = usage ? await writeUsagePlot(run.dir, usage.layers, usage.tokens) : undefined;
  if (usagePlot) plots.push(usagePlot);

  const sections: PageSection[] = [];
  sections.push({
    title: 'Summary',
    html: summary
      ? htmlFacts(summaryFacts(summary))
      : `<p class="note">Not finished: no summary.json yet. Last logged step ${checkpointStep} of ${record.derived.steps}.</p>`,
  });
  sections.push({ title: 'Loss', html: htmlFigure(loss, 'training loss at each logged step and validation loss at each evaluation') });
  const evals = metrics.filter((m) => m.kind === 'eval');
  if (evals.length > 0) {
    sections.push({
      title: 'Evaluations',
      html: htmlTable(
        ['step', 'tokens', 'val_loss', 'val_ppl', 'val_bpb'],
        evals.map((e) => [e.step, formatCount(Number(e.tokens)), fixed(Number(e.val_loss), 4), fixed(Number(e.val_ppl), 3), fixed(Number(e.val_bpb), 4)]),
        new Set(['step', 'tokens', 'val_loss', 'val_ppl', 'val_bpb']),
      ),
    });
  }
  sections.push({ title: 'Learning rate', html: htmlFigure(lr, 'dense learning rate (warmup, then the schedule)') });
  sections.push({ title: 'Throughput', html: htmlFigure(speed, 'training tokens per second and model FLOPs utilization (against the measured matMul rate), per logged window') });
  if (healthPlot) {
    const overlap = healthRecords.some((m) => m.head_overlap !== undefined);
    sections.push({
      title: 'Expert health while training',
      html: [
        htmlFigure(healthPlot, 'share of experts retrieved and unevenness (KL of the router weight to uniform) of each sparse layer, over the training steps since the previous evaluation'),
        htmlTable(
          ['step', 'block', 'layer', 'usage', 'unevenness (KL)', 'dead experts', ...(overlap ? ['head overlap'] : [])],
          healthRecords.map((m) => [
            `${Number(m.since_step) + 1}\u2013${m.step}`,
            Number(m.block),
            String(m.layer),
            formatPercent(Number(m.usage), 2),
            fixed(m.unevenness as number | null, 4),
            `${Number(m.dead).toLocaleString('en-US')} of ${Number(m.experts).toLocaleString('en-US')}`,
            ...(overlap ? [typeof m.head_overlap === 'number' ? formatPercent(m.head_overlap, 2) : 'n/a'] : []),
          ]),
          new Set(['block', 'usage', 'unevenness (KL)', 'dead experts', 'head overlap']),
        ),
        '<p>Dead experts: never retrieved in those steps; head overlap: share of retrievals whose expert another head of the same token also retrieved.</p>',
      ].join('\n'),
    });
  }
  if (sparse) {
    sections.push({
      title: 'Expert usage',
      html: usage && usagePlot ? `${usageNote ? `<p class="note">${escapeHtml(usageNote)}</p>` : ''}${usageSection(usage, usagePlot)}` : `<p class="note">${escapeHtml(usageNote || 'Not measured (run peer-train usage).')}</p>`,
    });
  }
  sections.push({
    title: 'Configuration',
    html: [
      htmlFacts([
        ['source', record.source],
        ['created', record.createdAt],
        ['backend', `${record.backend.name} via ${record.backend.provider} (requested ${record.backend.requested})`],
        ['node', record.node],
        ['planned steps', `${record.derived.steps.toLocaleString('en-US')} of ${record.derived.tokensPerStep.toLocaleString('en-US')} tokens`],
      ]),
      `<pre>${escapeHtml(JSON.stringify(config, null, 2))}</pre>`,
      htmlTable(['package', 'version'], Object.entries(record.versions)),
    ].join('\n'),
  });

  const html = htmlPage(`peer-train run ${record.name}`, `${run.dir}`, sections);
  const htmlPath = join(run.dir, REPORT_FILE);
  writeFileSync(htmlPath, html);
  return { htmlPath, plots };
}

/** A UsageError when `dir` is neither a run nor a sweep folder. */
export function notAReportFolder(dir: string): UsageError {
  return new UsageError(`report ${dir}: not a run folder (no config.json) nor a sweep folder (no sweep.json)`);
}
