// Points across seeds: the mean, sample standard deviation and range against a hand computation,
// the grouping of runs into points, and the CSV and Markdown cells.
import { describe, expect, it } from 'vitest';
import { formatSpread, hasSeeds, pointsCsv, pointsMarkdown, POINT_CSV_COLUMNS, seedPoints, spread } from './seed-points.js';
import type { SweepRow } from './summary-table.js';

function row(size: string, seed: number, loss: number | null, usage: number | null, kl: number | null): SweepRow {
  return {
    budget: 1e12,
    budget_label: '1e12',
    method: 'peer',
    size,
    n_experts: 16384,
    h: 8,
    k: 16,
    query_norm: 'batch',
    seed,
    params_total: 2e6,
    params_active: 2e5,
    flops_per_token: 5e5,
    steps: 100,
    tokens: loss === null ? null : 204800,
    val_loss: loss,
    val_ppl: loss === null ? null : Math.exp(loss),
    val_bpb: loss === null ? null : loss / Math.LN2,
    usage,
    unevenness: kl,
    dead_fraction: usage === null ? null : 1 - usage,
    wall_seconds: null,
    tokens_per_s: null,
    status: loss === null ? 'failed' : 'done',
    run: `runs/1e12-peer-${size}-s${seed}`,
  };
}

describe('points across seeds', () => {
  it('spread: mean, sample std (n - 1), min, max; nulls and non-finite values skipped', () => {
    // 2.0, 2.5, 3.0: mean 2.5, squared deviations 0.25 + 0 + 0.25 = 0.5, / (3 - 1) -> std 0.5
    expect(spread([2.0, 2.5, 3.0])).toEqual({ mean: 2.5, std: 0.5, min: 2, max: 3, n: 3 });
    expect(spread([1, null, 3, Number.NaN])).toEqual({ mean: 2, std: Math.SQRT2, min: 1, max: 3, n: 2 });
    expect(spread([4])).toEqual({ mean: 4, std: null, min: 4, max: 4, n: 1 });
    expect(spread([null])).toBeNull();
  });

  it('groups runs by (budget, method, size) in plan order; only finished runs count', () => {
    const rows = [row('a', 1, 2.0, 0.9, 0.3), row('a', 2, 2.5, 0.8, 0.45), row('b', 1, 1.5, 0.5, 1.0), row('a', 3, 3.0, 0.7, 0.6), row('b', 2, null, null, null)];
    const points = seedPoints(rows);
    expect(points.map((p) => [p.size, p.seeds, p.done])).toEqual([
      ['a', [1, 2, 3], 3],
      ['b', [1, 2], 1],
    ]);
    const a = points[0]!;
    expect(a.val_loss).toEqual({ mean: 2.5, std: 0.5, min: 2, max: 3, n: 3 });
    // usage 0.9, 0.8, 0.7: mean 0.8, std 0.1; KL 0.3, 0.45, 0.6: mean 0.45, std 0.15
    expect(a.usage!.mean).toBeCloseTo(0.8, 15);
    expect(a.usage!.std).toBeCloseTo(0.1, 15);
    expect(a.unevenness!.mean).toBeCloseTo(0.45, 15);
    expect(a.unevenness!.std).toBeCloseTo(0.15, 15);
    expect([a.dead_fraction!.min, a.dead_fraction!.max]).toEqual([1 - 0.9, 1 - 0.7]);
    expect(points[1]!.val_loss).toEqual({ mean: 1.5, std: null, min: 1.5, max: 1.5, n: 1 });
    expect(hasSeeds(rows)).toBe(true);
    expect(hasSeeds([row('a', 1, 2, null, null), row('b', 1, 2, null, null)])).toBe(false);
  });

  it('CSV and Markdown cells', () => {
    const points = seedPoints([row('a', 1, 2.0, 0.9, 0.3), row('a', 2, 2.5, 0.8, 0.45), row('a', 3, 3.0, 0.7, 0.6)]);
    const [header, line] = pointsCsv(points).trimEnd().split('\n');
    expect(header).toBe(POINT_CSV_COLUMNS.join(','));
    const cells = Object.fromEntries(POINT_CSV_COLUMNS.map((c, i) => [c, line!.split(',')[i]]));
    expect(cells).toMatchObject({ method: 'peer', size: 'a', n_experts: '16384', h: '8', k: '16', query_norm: 'batch', seeds: '1 2 3', done: '3' });
    expect([cells.val_loss_mean, cells.val_loss_std, cells.val_loss_min, cells.val_loss_max]).toEqual(['2.5', '0.5', '2', '3']);
    expect(formatSpread(points[0]!.val_loss, 4)).toBe('2.5000 ± 0.5000 (2.0000–3.0000)');
    expect(formatSpread(points[0]!.usage, 1, 100)).toBe('80.0 ± 10.0 (70.0–90.0)');
    expect(formatSpread({ mean: 1, std: null, min: 1, max: 1, n: 1 }, 2)).toBe('1.00');
    const md = pointsMarkdown(points).split('\n');
    expect(md[2]).toBe('| 1e12 | peer | a | 16,384 | 8 | 16 | batch | 3 of 3 | 2.5000 ± 0.5000 (2.0000–3.0000) | ' +
      `${formatSpread(points[0]!.val_bpb, 4)} | 80.0 ± 10.0 (70.0–90.0) | 0.4500 ± 0.1500 (0.3000–0.6000) | 20.0 ± 10.0 (10.0–30.0) |`);
  });
});
