// The plot of a sweep, chosen by its `plot` field: the isoFLOP curves, or an ablation of the PEER
// paper drawn from the points across seeds (seed-points.ts):
//   experts     validation loss against the number of experts N (log x), a curve per method and
//               budget (Figure 3a)
//   active      validation loss against the active experts h*k, a curve per number of heads h (Figure 3b)
//   query-norm  unevenness (KL to uniform) against N, a curve per query norm (Table 2)
// Each point is the mean over its seeds, with the lowest and highest seed as an error bar.
import type { TopLevelSpec } from 'vega-lite';
import { ablationSpec, isoFlopSpec, type AblationPoint, type IsoFlopPoint } from '../plots/specs.js';
import { seedPoints, type Spread, type SweepPoint } from './seed-points.js';
import type { SweepPlot } from './sweep-config.js';
import type { SweepRow } from './summary-table.js';

export interface SweepPlotSpec {
  /** File base name in the sweep folder. */
  file: string;
  /** What the plot shows, for captions. */
  caption: string;
  spec: TopLevelSpec;
}

interface Mapping {
  x: (p: SweepPoint) => number | null;
  y: (p: SweepPoint) => Spread | null;
  series: (p: SweepPoint) => string;
}

const MAPPINGS: Record<Exclude<SweepPlot, 'isoflop'>, Mapping> = {
  experts: { x: (p) => p.n_experts, y: (p) => p.val_loss, series: (p) => `${p.method} @ ${p.budget_label}` },
  active: { x: (p) => (p.h === null || p.k === null ? null : p.h * p.k), y: (p) => p.val_loss, series: (p) => `h = ${p.h}` },
  'query-norm': { x: (p) => p.n_experts, y: (p) => p.unevenness, series: (p) => p.query_norm ?? p.method },
};

/** The points of an ablation plot: the points with an x and a finished result. */
export function ablationPoints(plot: Exclude<SweepPlot, 'isoflop'>, rows: readonly SweepRow[]): AblationPoint[] {
  const m = MAPPINGS[plot];
  const out: AblationPoint[] = [];
  for (const p of seedPoints(rows)) {
    const x = m.x(p);
    const y = m.y(p);
    if (x === null || y === null) continue;
    out.push({ series: m.series(p), x, y: y.mean, lo: y.min, hi: y.max, point: `${p.budget_label} ${p.method} ${p.size}`, seeds: y.n });
  }
  return out;
}

/** The plot of a sweep named `name` with plot kind `plot` and x axis `plotX` (isoFLOP only). */
export function sweepPlot(name: string, plot: SweepPlot, plotX: 'active' | 'total', rows: readonly SweepRow[]): SweepPlotSpec {
  if (plot === 'isoflop') {
    const xActive = plotX !== 'total';
    // with seeds, a point is the mean of its seeds
    const points: IsoFlopPoint[] = seedPoints(rows)
      .filter((p) => p.val_loss !== null)
      .map((p) => ({ method: p.method, budget: p.budget_label, size: p.size, params: xActive ? p.params_active : p.params_total, val_loss: p.val_loss!.mean }));
    const xTitle = xActive ? 'parameters active per token' : 'parameters (total)';
    return { file: 'isoflop', caption: `final validation loss against ${xTitle}, one curve per method and budget`, spec: isoFlopSpec(points, xTitle, `isoFLOP curves: ${name}`) };
  }
  const seeds = 'points: mean over seeds, bars: lowest to highest seed';
  if (plot === 'experts') {
    return {
      file: 'experts',
      caption: 'final validation loss against the number of experts N, one curve per method and budget',
      spec: ablationSpec(ablationPoints('experts', rows), {
        title: `number of experts: ${name}`,
        subtitle: `${seeds}; lower is better`,
        xTitle: 'experts N',
        yTitle: 'validation loss (nats/token)',
        xLog: true,
        seriesTitle: 'method @ budget',
      }),
    };
  }
  if (plot === 'active') {
    return {
      file: 'active',
      caption: 'final validation loss against the active experts h*k, one curve per number of heads h',
      spec: ablationSpec(ablationPoints('active', rows), {
        title: `active experts: ${name}`,
        subtitle: `${seeds}; lower is better`,
        xTitle: 'active experts h*k',
        yTitle: 'validation loss (nats/token)',
        xLog: true,
        seriesTitle: 'heads',
      }),
    };
  }
  return {
    file: 'query-norm',
    caption: 'unevenness of the expert usage (KL to uniform) against the number of experts N, one curve per query norm',
    spec: ablationSpec(ablationPoints('query-norm', rows), {
      title: `query norm: ${name}`,
      subtitle: `${seeds}; final evaluation; 0 = perfectly even`,
      xTitle: 'experts N',
      yTitle: 'unevenness (KL to uniform, nats)',
      xLog: true,
      seriesTitle: 'query norm',
    }),
  };
}
