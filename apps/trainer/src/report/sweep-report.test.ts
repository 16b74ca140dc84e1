// A sweep folder's outputs from fixture runs: a planned sweep (tiny models, seeds, three methods)
// whose runs' summary.json files hold known results and usage numbers; the tables' cells, the
// points across seeds and the ablation plots' points are checked against a hand computation.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RunSummary, SummaryUsage } from '../run/summary.js';
import { ablationPoints } from '../sweep/ablation-plots.js';
import { planSweep, writeSweepFolder, type SweepRecord } from '../sweep/plan.js';
import { CSV_COLUMNS } from '../sweep/summary-table.js';
import { parseSweepConfig, type LoadedSweep } from '../sweep/sweep-config.js';
import { writeSweepOutputs } from './sweep-report.js';

const sweep = (plot: string) =>
  parseSweepConfig(
    {
      base: { extends: 'tiny' },
      budgets: [1e10],
      methods: { batch: {}, none: { model: { ffw: { options: { queryNorm: 'none' } } } }, dense: {} },
      sizes: [
        { name: 'n16', seeds: [1, 2, 3] },
        { name: 'n32', config: { model: { ffw: { options: { numExperts: 1024, heads: 4, topK: 2 } } } } },
      ],
      plot,
    },
    'fixture',
  );

/** Known results: loss and usage per run, by id. */
const RESULTS: Record<string, { loss: number; usage?: SummaryUsage[] }> = {
  '1e10-batch-n16-s1': { loss: 2.0, usage: [{ block: 1, kind: 'peer', experts: 256, usage: 0.9, unevenness: 0.3, dead_fraction: 0.1 }] },
  '1e10-batch-n16-s2': { loss: 2.5, usage: [{ block: 1, kind: 'peer', experts: 256, usage: 0.8, unevenness: 0.45, dead_fraction: 0.2 }] },
  '1e10-batch-n16-s3': { loss: 3.0, usage: [{ block: 1, kind: 'peer', experts: 256, usage: 0.7, unevenness: 0.6, dead_fraction: 0.3 }] },
  '1e10-none-n16-s1': { loss: 2.25, usage: [{ block: 1, kind: 'peer', experts: 256, usage: 0.5, unevenness: 1.0, dead_fraction: 0.5 }] },
  // s2 of none is left unfinished; s3 has two sparse layers (the cells are their mean)
  '1e10-none-n16-s3': {
    loss: 2.75,
    usage: [
      { block: 0, kind: 'peer', experts: 256, usage: 0.5, unevenness: 1.0, dead_fraction: 0.5 },
      { block: 1, kind: 'peer', experts: 256, usage: 0.7, unevenness: 2.0, dead_fraction: 0.3 },
    ],
  },
  '1e10-dense-n16-s1': { loss: 2.6 },
  '1e10-batch-n32': { loss: 1.75, usage: [{ block: 1, kind: 'peer', experts: 1024, usage: 0.95, unevenness: 0.2, dead_fraction: 0.05 }] },
  '1e10-none-n32': { loss: 1.5, usage: [{ block: 1, kind: 'peer', experts: 1024, usage: 0.6, unevenness: 1.2, dead_fraction: 0.4 }] },
};

async function fixture(plot: string): Promise<{ dir: string; record: SweepRecord }> {
  const dir = mkdtempSync(join(tmpdir(), 'peer-sweep-report-'));
  const loaded: LoadedSweep = { name: 'fixture', source: 'test', description: 'fixture sweep', sweep: sweep(plot) };
  const plan = await planSweep(loaded);
  const record = writeSweepFolder(dir, loaded, plan, undefined);
  for (const run of record.runs) {
    const result = RESULTS[run.id];
    if (!result) continue;
    mkdirSync(join(dir, run.dir), { recursive: true });
    const summary: RunSummary = {
      run: join(dir, run.dir),
      name: run.id,
      ffw: run.ffw,
      params_total: run.paramsTotal,
      params_active_per_token: run.paramsActive,
      params_embedding: 0,
      flops_per_token: run.flopsPerToken,
      flops: run.budget,
      tokens: run.steps * run.tokensPerStep,
      steps: run.steps,
      val_loss: result.loss,
      val_ppl: Math.exp(result.loss),
      val_bpb: result.loss / Math.LN2,
      val_tokens: 512,
      wall_seconds: 10,
      tokens_per_s: 1000,
      mfu: null,
      backend: 'wasm',
      seed: run.seed ?? 1337,
      ...(result.usage ? { usage: result.usage } : {}),
      finished_at: '2026-12-06T00:00:00.000Z',
    };
    writeFileSync(join(dir, run.dir, 'summary.json'), JSON.stringify(summary));
  }
  return { dir, record };
}

describe('sweep outputs from fixture runs', () => {
  it('summary.csv: N, h, k, query norm and seed from the configs, usage cells from the summaries, empty for dense', async () => {
    const { dir } = await fixture('query-norm');
    const out = await writeSweepOutputs(dir);
    const lines = readFileSync(out.csvPath, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe(CSV_COLUMNS.join(','));
    const byId = new Map(
      lines.slice(1).map((l) => {
        const cells = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, l.split(',')[i]]));
        return [cells.run!.replace('runs/', ''), cells];
      }),
    );
    expect(byId.size).toBe(3 * 3 + 3);
    const pick = (id: string, cols: string[]) => cols.map((c) => byId.get(id)![c]);
    const shape = ['n_experts', 'h', 'k', 'query_norm', 'seed'];
    const use = ['usage', 'unevenness', 'dead_fraction', 'status'];
    // tiny: 16^2 experts, 2 heads, top-4, query BatchNorm by the layer's default
    expect(pick('1e10-batch-n16-s2', [...shape, ...use])).toEqual(['256', '2', '4', 'batch', '2', '0.8', '0.45', '0.2', 'done']);
    expect(pick('1e10-none-n32', [...shape, ...use])).toEqual(['1024', '4', '2', 'none', '1337', '0.6', '1.2', '0.4', 'done']);
    // two sparse layers: the mean of each metric
    expect(pick('1e10-none-n16-s3', use)).toEqual(['0.6', '1.5', '0.4', 'done']);
    expect(pick('1e10-none-n16-s2', [...shape, 'val_loss', ...use])).toEqual(['256', '2', '4', 'none', '2', '', '', '', '', 'not run']);
    expect(pick('1e10-dense-n16-s1', [...shape, 'val_loss', ...use])).toEqual(['', '', '', '', '1', '2.6', '', '', '', 'done']);

    // points across seeds
    const points = readFileSync(out.pointsPath!, 'utf8').trimEnd().split('\n');
    const header = points[0]!.split(',');
    const point = (method: string, size: string) => {
      const line = points.find((l) => l.startsWith(`10000000000,${method},${size},`))!.split(',');
      return Object.fromEntries(header.map((h, i) => [h, line[i]]));
    };
    const batch = point('batch', 'n16');
    expect([batch.seeds, batch.done, batch.val_loss_mean, batch.val_loss_std, batch.val_loss_min, batch.val_loss_max]).toEqual(['1 2 3', '3', '2.5', '0.5', '2', '3']);
    expect(Number(batch.usage_mean)).toBeCloseTo(0.8, 15);
    expect(Number(batch.usage_std)).toBeCloseTo(0.1, 15);
    expect(Number(batch.unevenness_std)).toBeCloseTo(0.15, 15);
    // none at n16: seeds 1 and 3 finished; KL 1.0 and (1.0 + 2.0) / 2 = 1.5 -> mean 1.25, std sqrt(2 * 0.25^2 / 1)
    const none = point('none', 'n16');
    expect([none.done, none.unevenness_mean, none.unevenness_min, none.unevenness_max]).toEqual(['2', '1.25', '1', '1.5']);
    expect(Number(none.unevenness_std)).toBeCloseTo(Math.sqrt(2 * 0.25 * 0.25), 15);
    expect(point('batch', 'n32').val_loss_std).toBe('');

    const md = readFileSync(out.mdPath, 'utf8');
    expect(md).toContain('| 1e10 | batch | n16 | 256 | 2 | 4 | batch | 2 | ');
    expect(md).toContain('| 80.0% | 0.4500 | 20.0% |');
    expect(md).toContain('## Across seeds');
    expect(md).toContain('| 1e10 | batch | n16 | 256 | 2 | 4 | batch | 3 of 3 | 2.5000 ± 0.5000 (2.0000–3.0000) |');
    expect(md).toContain('(query-norm.png)');
    const html = readFileSync(out.htmlPath, 'utf8');
    expect(html).toContain('Across seeds');
    expect(html).toContain('<td class="num">2.5000 ± 0.5000 (2.0000–3.0000)</td>');
    expect(out.plots[0]!.svgPath).toBe(join(dir, 'query-norm.svg'));
  }, 60_000);

  it('the ablation plots: the points (means over seeds, lowest and highest seed) and series each plot gets', async () => {
    const { dir } = await fixture('experts');
    const { rows } = await writeSweepOutputs(dir);
    const sorted = <T extends { series: string; x: number }>(ps: T[]) => [...ps].sort((a, b) => a.series.localeCompare(b.series) || a.x - b.x);
    // unevenness against N, a curve per query norm; dense has no N and no usage
    expect(sorted(ablationPoints('query-norm', rows)).map((p) => [p.series, p.x, p.y, p.lo, p.hi, p.seeds])).toEqual([
      ['batch', 256, 0.45, 0.3, 0.6, 3],
      ['batch', 1024, 0.2, 0.2, 0.2, 1],
      ['none', 256, 1.25, 1, 1.5, 2],
      ['none', 1024, 1.2, 1.2, 1.2, 1],
    ]);
    // loss against N, a curve per method and budget
    expect(sorted(ablationPoints('experts', rows)).map((p) => [p.series, p.x, p.y, p.lo, p.hi])).toEqual([
      ['batch @ 1e10', 256, 2.5, 2, 3],
      ['batch @ 1e10', 1024, 1.75, 1.75, 1.75],
      ['none @ 1e10', 256, 2.5, 2.25, 2.75],
      ['none @ 1e10', 1024, 1.5, 1.5, 1.5],
    ]);
    // loss against h*k, a curve per h: n16 has h = 2, k = 4 (h*k 8); n32 h = 4, k = 2 (h*k 8); ties in plan order (batch, none)
    expect(sorted(ablationPoints('active', rows)).map((p) => [p.series, p.x, p.y])).toEqual([
      ['h = 2', 8, 2.5],
      ['h = 2', 8, 2.5],
      ['h = 4', 8, 1.75],
      ['h = 4', 8, 1.5],
    ]);
    // the experts plot file: one point mark per plotted point, error bars for the seeded points
    const svg = readFileSync(join(dir, 'experts.svg'), 'utf8');
    expect([...svg.matchAll(/aria-roledescription="point"/g)]).toHaveLength(4);
    expect(svg).toContain('experts N');
  }, 60_000);
});
