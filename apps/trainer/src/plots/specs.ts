// The vega-lite specs of every plot the trainer draws: a run's loss curves, learning rate,
// throughput, expert usage and expert health over training, and a sweep's isoFLOP curves. Each function takes plain rows and
// returns a spec; rendering lives in render.ts.
import type { TopLevelSpec } from 'vega-lite';
import { PLOT_SIZE } from './render.js';

/** One logged step of metrics.jsonl, as the plots read it. */
export interface MetricPoint {
  kind: 'train' | 'eval' | 'health';
  step: number;
  [key: string]: number | string | null;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Training loss at each logged step and validation loss at each evaluation, against the step. */
export function lossCurveSpec(metrics: readonly MetricPoint[], title = 'loss'): TopLevelSpec {
  const values: { step: number; loss: number; series: string }[] = [];
  for (const m of metrics) {
    const loss = m.kind === 'train' ? num(m.loss) : num(m.val_loss);
    if (loss !== undefined) values.push({ step: m.step, loss, series: m.kind === 'train' ? 'train' : 'validation' });
  }
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: ['train', 'validation'], range: ['#4c78a8', '#e45756'] } };
  return {
    title,
    width: PLOT_SIZE.width,
    height: PLOT_SIZE.height,
    data: { values },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'cross-entropy (nats/token)', scale: { zero: false } },
      color,
    },
    layer: [
      { transform: [{ filter: "datum.series === 'train'" }], mark: { type: 'line', strokeWidth: 1.5 } },
      { transform: [{ filter: "datum.series === 'validation'" }], mark: { type: 'line', point: true, strokeWidth: 2 } },
    ],
  } as TopLevelSpec;
}

/** The dense learning rate at each logged step. */
export function learningRateSpec(metrics: readonly MetricPoint[], title = 'learning rate'): TopLevelSpec {
  const values = metrics.filter((m) => m.kind === 'train' && num(m.lr) !== undefined).map((m) => ({ step: m.step, lr: m.lr as number }));
  return {
    title,
    width: PLOT_SIZE.width,
    height: Math.round(PLOT_SIZE.height * 0.6),
    data: { values },
    mark: { type: 'line', color: '#54a24b' },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'lr', type: 'quantitative', title: 'learning rate', axis: { format: '.1e' } },
    },
  } as TopLevelSpec;
}

/** Training tokens per second and model FLOPs utilization over the logged windows. */
export function throughputSpec(metrics: readonly MetricPoint[], title = 'throughput'): TopLevelSpec {
  const train = metrics.filter((m) => m.kind === 'train');
  const speed = train.filter((m) => num(m.tokens_per_s) !== undefined).map((m) => ({ step: m.step, value: m.tokens_per_s as number }));
  const mfu = train.filter((m) => num(m.mfu) !== undefined).map((m) => ({ step: m.step, value: 100 * (m.mfu as number) }));
  const panel = (values: { step: number; value: number }[], yTitle: string, color: string) => ({
    width: PLOT_SIZE.width,
    height: Math.round(PLOT_SIZE.height * 0.6),
    data: { values },
    mark: { type: 'line', color, point: values.length < 40 ? { color } : false },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: yTitle },
    },
  });
  const panels = [panel(speed, 'tokens/s', '#4c78a8')];
  if (mfu.length > 0) panels.push(panel(mfu, 'MFU (%)', '#f58518'));
  return { title, vconcat: panels } as TopLevelSpec;
}

/**
 * Expert health over training, from the `health` records: usage (%) and unevenness (KL to uniform)
 * of each sparse layer at each evaluation, against the step; one line per layer.
 */
export function expertHealthSpec(metrics: readonly MetricPoint[], title = 'expert health'): TopLevelSpec {
  const health = metrics.filter((m) => m.kind === 'health');
  const series = (m: MetricPoint) => `block ${String(m.block)} (${String(m.layer)})`;
  const usage = health.filter((m) => num(m.usage) !== undefined).map((m) => ({ step: m.step, value: 100 * (m.usage as number), layer: series(m) }));
  const kl = health.filter((m) => num(m.unevenness) !== undefined).map((m) => ({ step: m.step, value: m.unevenness as number, layer: series(m) }));
  const panel = (values: { step: number; value: number; layer: string }[], yTitle: string) => ({
    width: PLOT_SIZE.width,
    height: Math.round(PLOT_SIZE.height * 0.6),
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: yTitle, scale: { zero: false } },
      color: { field: 'layer', type: 'nominal', title: 'layer' },
    },
  });
  return {
    title: { text: title, subtitle: 'over the training steps since the previous evaluation' },
    vconcat: [panel(usage, 'experts used (%)'), panel(kl, 'unevenness (KL to uniform, nats)')],
  } as TopLevelSpec;
}

/** One histogram bar: `count` experts whose share of router weight, times N, is in [lo, hi). */
export interface UsageBar {
  layer: string;
  lo: number;
  hi: number;
  count: number;
}

/**
 * Histogram of the experts' share of router weight in units of the uniform share (z_i * N = 1 is
 * perfectly even use), log-spaced bins; one panel per sparse layer.
 */
export function usageHistogramSpec(bars: readonly UsageBar[], subtitle: string | string[], title = 'expert usage'): TopLevelSpec {
  const layers = [...new Set(bars.map((b) => b.layer))];
  const inner = {
    width: PLOT_SIZE.width,
    height: Math.round(PLOT_SIZE.height * 0.7),
    layer: [
      {
        mark: { type: 'rect', color: '#4c78a8', stroke: 'white', strokeWidth: 0.5 },
        encoding: {
          x: { field: 'lo', type: 'quantitative', scale: { type: 'log' }, title: 'router weight share x N (1 = uniform)', axis: { format: '~g' } },
          x2: { field: 'hi' },
          y: { field: 'count', type: 'quantitative', title: 'experts' },
          y2: { datum: 0 },
        },
      },
      { mark: { type: 'rule', color: '#e45756', strokeDash: [4, 3] }, encoding: { x: { datum: 1 } } },
    ],
  };
  const head = { title: { text: title, subtitle }, data: { values: bars } };
  if (layers.length <= 1) return { ...head, ...inner } as TopLevelSpec;
  return { ...head, facet: { row: { field: 'layer', type: 'nominal', title: null } }, spec: inner } as TopLevelSpec;
}

/** One finished run of a sweep. */
export interface IsoFlopPoint {
  method: string;
  /** Budget label, e.g. `3e13`. */
  budget: string;
  size: string;
  params: number;
  val_loss: number;
}

/**
 * isoFLOP curves: final validation loss against model size, one line per (method, budget): colour
 * is the method, dash and point shape the budget.
 */
export function isoFlopSpec(points: readonly IsoFlopPoint[], xTitle: string, title = 'isoFLOP curves'): TopLevelSpec {
  const methods = [...new Set(points.map((p) => p.method))];
  const budgets = [...new Set(points.map((p) => p.budget))];
  return {
    title: { text: title, subtitle: `${budgets.length === 1 ? 'budget' : 'budgets'} ${budgets.join(', ')} FLOPs; lower is better` },
    width: PLOT_SIZE.width,
    height: PLOT_SIZE.height,
    data: { values: points.map((p) => ({ ...p, series: `${p.method} @ ${p.budget}` })) },
    encoding: {
      x: { field: 'params', type: 'quantitative', scale: { type: 'log', nice: false, padding: 24 }, title: xTitle, axis: { format: '~s' } },
      y: { field: 'val_loss', type: 'quantitative', scale: { zero: false }, title: 'validation loss (nats/token)' },
      color: { field: 'method', type: 'nominal', title: 'method', scale: { domain: methods } },
      detail: { field: 'series', type: 'nominal' },
      order: { field: 'params', type: 'quantitative' },
    },
    layer: [
      {
        mark: { type: 'line', strokeWidth: 2 },
        encoding: { strokeDash: { field: 'budget', type: 'nominal', title: 'budget (FLOPs)', scale: { domain: budgets } } },
      },
      {
        mark: { type: 'point', filled: true, size: 60, opacity: 1 },
        encoding: {
          shape: { field: 'budget', type: 'nominal', title: 'budget (FLOPs)', scale: { domain: budgets } },
          tooltip: [{ field: 'method' }, { field: 'size' }, { field: 'budget' }, { field: 'params', format: ',' }, { field: 'val_loss', format: '.4f' }],
        },
      },
    ],
  } as TopLevelSpec;
}

/** One point of an ablation plot: the mean over a point's seeds, with their range. */
export interface AblationPoint {
  /** The curve the point belongs to. */
  series: string;
  x: number;
  /** Mean over the seeds. */
  y: number;
  /** Lowest and highest seed (both y with one seed). */
  lo: number;
  hi: number;
  /** The run point, for the tooltip (`<budget> <method> <size>`). */
  point: string;
  /** Seeds the mean is over. */
  seeds: number;
}

export interface AblationAxes {
  title: string;
  subtitle: string;
  xTitle: string;
  yTitle: string;
  /** A log-scale x axis (N), else linear. */
  xLog: boolean;
  seriesTitle: string;
}

/**
 * An ablation in the paper's form: a result (loss, unevenness) against the ablated quantity, one
 * curve per series, each point the mean over seeds with an error bar from the lowest to the
 * highest seed.
 */
export function ablationSpec(points: readonly AblationPoint[], axes: AblationAxes): TopLevelSpec {
  const series = [...new Set(points.map((p) => p.series))];
  const x = {
    field: 'x',
    type: 'quantitative',
    title: axes.xTitle,
    scale: axes.xLog ? { type: 'log', nice: false, padding: 24 } : { zero: false, padding: 24 },
    axis: { format: '~s' },
  };
  const color = { field: 'series', type: 'nominal', title: axes.seriesTitle, scale: { domain: series } };
  const layers: object[] = [
    { mark: { type: 'line', strokeWidth: 2 }, encoding: { x, y: { field: 'y', type: 'quantitative', scale: { zero: false }, title: axes.yTitle }, color, order: { field: 'x', type: 'quantitative' } } },
    {
      mark: { type: 'point', filled: true, size: 60, opacity: 1 },
      encoding: {
        x,
        y: { field: 'y', type: 'quantitative' },
        color,
        tooltip: [{ field: 'point' }, { field: 'series' }, { field: 'x', title: axes.xTitle, format: ',' }, { field: 'y', title: axes.yTitle, format: '.4f' }, { field: 'seeds' }],
      },
    },
  ];
  if (points.some((p) => p.hi > p.lo)) {
    layers.push({ mark: { type: 'rule', strokeWidth: 1.5 }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color } });
  }
  return {
    title: { text: axes.title, subtitle: axes.subtitle },
    width: PLOT_SIZE.width,
    height: PLOT_SIZE.height,
    data: { values: points },
    layer: layers,
  } as TopLevelSpec;
}
