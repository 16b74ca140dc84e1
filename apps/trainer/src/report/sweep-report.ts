// The outputs of a sweep folder: summary.csv, summary.md, the isoFLOP plot (isoflop.svg/.png) and
// report.html (the table, the plot and the sweep config, self-contained).
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writePlot, type PlotFiles } from '../plots/render.js';
import { isoFlopSpec, type IsoFlopPoint } from '../plots/specs.js';
import { checkSweepFolder, type SweepRecord } from '../sweep/plan.js';
import type { RunStatus } from '../sweep/run-sweep.js';
import { bestRows, collectRows, DISPLAY_COLUMNS, displayRow, toCsv, toMarkdown, type SweepRow } from '../sweep/summary-table.js';
import { escapeHtml, htmlFacts, htmlFigure, htmlPage, type PageSection } from './html.js';
import { REPORT_FILE, type ReportResult } from './run-report.js';

export const SWEEP_OUTPUTS = { csv: 'summary.csv', md: 'summary.md', plot: 'isoflop', html: REPORT_FILE } as const;

export interface SweepOutputs extends ReportResult {
  rows: SweepRow[];
  csvPath: string;
  mdPath: string;
}

function tableHtml(rows: readonly SweepRow[]): string {
  const best = bestRows(rows);
  const numeric = new Set(DISPLAY_COLUMNS.slice(3));
  const head = `<thead><tr>${DISPLAY_COLUMNS.map((h) => `<th${numeric.has(h) ? ' class="num"' : ''}>${escapeHtml(h)}</th>`).join('')}</tr></thead>`;
  const body = rows.map((r) => {
    const cells = displayRow(r, false).map((c, i) => `<td${numeric.has(DISPLAY_COLUMNS[i]!) ? ' class="num"' : ''}>${escapeHtml(c)}</td>`);
    return `<tr${best.has(r) ? ' class="best"' : ''}>${cells.join('')}</tr>`;
  });
  return `<table>${head}<tbody>\n${body.join('\n')}\n</tbody></table>`;
}

/** Writes the table, the plot and the report of the sweep in `dir` (from whatever runs have finished). */
export async function writeSweepOutputs(dir: string, statuses?: ReadonlyMap<string, RunStatus>, record?: SweepRecord): Promise<SweepOutputs> {
  const abs = resolve(dir);
  const rec = record ?? checkSweepFolder(dir, 'report')!;
  const rows = collectRows(abs, rec, statuses);
  const csvPath = join(abs, SWEEP_OUTPUTS.csv);
  const mdPath = join(abs, SWEEP_OUTPUTS.md);
  writeFileSync(csvPath, toCsv(rows));
  writeFileSync(mdPath, toMarkdown(rows, rec));

  const xActive = rec.sweep.plotX !== 'total';
  const points: IsoFlopPoint[] = rows
    .filter((r) => r.val_loss !== null)
    .map((r) => ({ method: r.method, budget: r.budget_label, size: r.size, params: xActive ? r.params_active : r.params_total, val_loss: r.val_loss! }));
  const xTitle = xActive ? 'parameters active per token' : 'parameters (total)';
  const plot: PlotFiles = await writePlot(abs, SWEEP_OUTPUTS.plot, isoFlopSpec(points, xTitle, `isoFLOP curves: ${rec.name}`));

  const done = rows.filter((r) => r.status === 'done').length;
  const sections: PageSection[] = [
    {
      title: 'Results',
      html: [
        `<p>${done} of ${rows.length} runs finished. Bold rows: the lowest validation loss of each method at each budget (its compute-optimal size). ` +
          'FLOPs/token: forward, a multiply-add counts 2 (a training step costs 3x); val_loss in nats per token, val_bpb in bits per byte.</p>',
        tableHtml(rows),
      ].join('\n'),
    },
    { title: 'isoFLOP curves', html: htmlFigure(plot, `final validation loss against ${xTitle}, one curve per method and budget`) },
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
        ]),
        `<pre>${escapeHtml(JSON.stringify(rec.sweep, null, 2))}</pre>`,
      ].join('\n'),
    },
  ];
  const htmlPath = join(abs, SWEEP_OUTPUTS.html);
  writeFileSync(htmlPath, htmlPage(`peer-train sweep ${rec.name}`, rec.description || abs, sections));
  return { rows, csvPath, mdPath, htmlPath, plots: [plot] };
}
