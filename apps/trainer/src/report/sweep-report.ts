// The outputs of a sweep folder: summary.csv, summary.md, seed-points.csv (sweeps with seeds), the
// sweep's plot (isoflop, experts, active or query-norm .svg/.png, by its `plot` field) and
// report.html (the tables, the plot and the sweep config, self-contained).
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resolveConfig } from '../config/resolve.js';
import type { TrainConfig } from '../config/schema.js';
import { writePlot, type PlotFiles } from '../plots/render.js';
import { sweepPlot } from '../sweep/ablation-plots.js';
import { checkSweepFolder, type SweepRecord } from '../sweep/plan.js';
import type { RunStatus } from '../sweep/run-sweep.js';
import { hasSeeds, pointCells, pointsCsv, POINT_DISPLAY_COLUMNS, POINT_TEXT_COLUMNS, seedPoints, type SweepPoint } from '../sweep/seed-points.js';
import { bestRows, collectRows, DISPLAY_COLUMNS, displayRow, TEXT_COLUMNS, toCsv, toMarkdown, type SweepRow } from '../sweep/summary-table.js';
import { escapeHtml, htmlFacts, htmlFigure, htmlPage, type PageSection } from './html.js';
import { REPORT_FILE, type ReportResult } from './run-report.js';

export const SWEEP_OUTPUTS = { csv: 'summary.csv', md: 'summary.md', points: 'seed-points.csv', html: REPORT_FILE } as const;

export interface SweepOutputs extends ReportResult {
  rows: SweepRow[];
  csvPath: string;
  mdPath: string;
  /** seed-points.csv, written for sweeps with several seeds. */
  pointsPath?: string;
}

function tableHtml(rows: readonly SweepRow[]): string {
  const best = bestRows(rows);
  const numeric = (h: string) => !TEXT_COLUMNS.has(h);
  const head = `<thead><tr>${DISPLAY_COLUMNS.map((h) => `<th${numeric(h) ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('')}</tr></thead>`;
  const body = rows.map((r) => {
    const cells = displayRow(r, false).map((c, i) => `<td${numeric(DISPLAY_COLUMNS[i]!) ? ' class="num"' : ''}>${escapeHtml(c)}</td>`);
    return `<tr${best.has(r) ? ' class="best"' : ''}>${cells.join('')}</tr>`;
  });
  return `<table>${head}<tbody>\n${body.join('\n')}\n</tbody></table>`;
}

function pointsHtml(points: readonly SweepPoint[]): string {
  const cls = (h: string) => (POINT_TEXT_COLUMNS.has(h) ? '' : ' class="num"');
  const head = `<thead><tr>${POINT_DISPLAY_COLUMNS.map((h) => `<th${cls(h)}>${escapeHtml(h)}</th>`).join('')}</tr></thead>`;
  const body = points.map((p) => `<tr>${pointCells(p).map((c, i) => `<td${cls(POINT_DISPLAY_COLUMNS[i]!)}>${escapeHtml(c)}</td>`).join('')}</tr>`);
  return `<table>${head}<tbody>\n${body.join('\n')}\n</tbody></table>`;
}

/** Each run's resolved train config, from its config file (runs whose file is missing or bad are left out). */
export function runConfigs(dir: string, record: SweepRecord): Map<string, TrainConfig> {
  const configs = new Map<string, TrainConfig>();
  for (const run of record.runs) {
    const file = join(resolve(dir), run.config);
    if (!existsSync(file)) continue;
    try {
      configs.set(run.id, resolveConfig({ configFile: file }).config);
    } catch {
      // a table without this run's layer shape; the run itself reports its config's problem
    }
  }
  return configs;
}

/** Writes the tables, the plot and the report of the sweep in `dir` (from whatever runs have finished). */
export async function writeSweepOutputs(dir: string, statuses?: ReadonlyMap<string, RunStatus>, record?: SweepRecord): Promise<SweepOutputs> {
  const abs = resolve(dir);
  const rec = record ?? checkSweepFolder(dir, 'report')!;
  const rows = collectRows(abs, rec, statuses, runConfigs(abs, rec));
  const plotKind = rec.sweep.plot ?? 'isoflop';
  const chart = sweepPlot(rec.name, plotKind, rec.sweep.plotX, rows);
  const csvPath = join(abs, SWEEP_OUTPUTS.csv);
  const mdPath = join(abs, SWEEP_OUTPUTS.md);
  writeFileSync(csvPath, toCsv(rows));
  writeFileSync(mdPath, toMarkdown(rows, rec, { file: `${chart.file}.png`, caption: chart.caption }));
  const seeds = hasSeeds(rows);
  const points = seedPoints(rows);
  let pointsPath: string | undefined;
  if (seeds) {
    pointsPath = join(abs, SWEEP_OUTPUTS.points);
    writeFileSync(pointsPath, pointsCsv(points));
  }
  const plot: PlotFiles = await writePlot(abs, chart.file, chart.spec);

  const done = rows.filter((r) => r.status === 'done').length;
  const sections: PageSection[] = [
    {
      title: 'Results',
      html: [
        `<p>${done} of ${rows.length} runs finished. Bold rows: the lowest validation loss of each method at each budget (its compute-optimal size). ` +
          'FLOPs/token: forward, a multiply-add counts 2 (a training step costs 3x); val_loss in nats per token, val_bpb in bits per byte. ' +
          'N: experts or memories, h heads, k per head; usage, KL, dead: over the final evaluation, the fraction of experts retrieved, ' +
          'the KL divergence of their router weight to uniform and the fraction never retrieved.</p>',
        tableHtml(rows),
      ].join('\n'),
    },
    ...(seeds
      ? [{ title: 'Across seeds', html: `<p>Each point over its finished seeds: mean ± sample standard deviation (min–max).</p>\n${pointsHtml(points)}` }]
      : []),
    { title: plotKind === 'isoflop' ? 'isoFLOP curves' : `Ablation: ${plotKind}`, html: htmlFigure(plot, chart.caption) },
    {
      title: 'Runs',
      html: `<ul>${rows.map((r) => `<li><a href="${escapeHtml(r.run)}/">${escapeHtml(r.run)}</a>: ${escapeHtml(r.status)}</li>`).join('')}</ul>`,
    },
    {
      title: 'Sweep configuration',
      html: [
        htmlFacts([
          ['source', rec.source],
          ['created', rec.createdAt],
          ['budgets', rec.sweep.budgets.map((b) => b.toExponential()).join(', ')],
          ['methods', Object.keys(rec.sweep.methods).join(', ')],
          ['sizes', rec.sweep.sizes.map((s) => s.name).join(', ')],
          ...(rec.sweep.seeds ? [['seeds', rec.sweep.seeds.join(', ')] as [string, string]] : []),
        ]),
        `<pre>${escapeHtml(JSON.stringify(rec.sweep, null, 2))}</pre>`,
      ].join('\n'),
    },
  ];
  const htmlPath = join(abs, SWEEP_OUTPUTS.html);
  writeFileSync(htmlPath, htmlPage(`peer-train sweep ${rec.name}`, rec.description || abs, sections));
  return { rows, csvPath, mdPath, ...(pointsPath ? { pointsPath } : {}), htmlPath, plots: [plot] };
}
