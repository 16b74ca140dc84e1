// Histogram of expert usage: how each expert's share of the accumulated router weight compares to
// the uniform share. With z_i = w_i / sum(w), the histogram counts z_i * N (1 = exactly uniform) on
// log-spaced bins; experts that never got weight (z_i = 0) are counted apart, since they have no
// place on a log axis.
//
// Axes: N experts.

export interface UsageHistogram {
  /** Bin edges (length bins + 1), log-spaced, in units of the uniform share (z_i * N). */
  edges: number[];
  /** Experts per bin: edges[b] <= z_i * N < edges[b + 1]. */
  counts: number[];
  /** Experts with z_i = 0. */
  zeros: number;
  /** Experts with 0 < z_i * N < edges[0]. */
  below: number;
  /** Experts with z_i * N >= edges[bins]. */
  above: number;
}

export interface HistogramOptions {
  /** Number of bins (default 24). */
  bins?: number;
  /** Range of z_i * N covered by the bins (default [1e-3, 1e3]). */
  range?: [number, number];
}

/** The histogram of `weights` (accumulated router weight per expert). All zeros give zeros = N. */
export function usageHistogram(weights: Float64Array | readonly number[], options: HistogramOptions = {}): UsageHistogram {
  const bins = options.bins ?? 24;
  const [lo, hi] = options.range ?? [1e-3, 1e3];
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`usageHistogram: bins must be a positive integer, got ${bins}`);
  if (!(lo > 0 && hi > lo && Number.isFinite(hi))) throw new Error(`usageHistogram: range must be [lo, hi] with 0 < lo < hi, got [${lo}, ${hi}]`);
  const n = weights.length;
  const logLo = Math.log(lo);
  const width = (Math.log(hi) - logLo) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, b) => lo * (hi / lo) ** (b / bins));
  const h: UsageHistogram = { edges, counts: new Array<number>(bins).fill(0), zeros: 0, below: 0, above: 0 };
  let total = 0;
  for (let i = 0; i < n; i++) total += weights[i]!;
  for (let i = 0; i < n; i++) {
    const w = weights[i]!;
    if (!(w > 0) || !(total > 0)) {
      h.zeros++;
      continue;
    }
    const rel = (w / total) * n;
    if (rel < lo) h.below++;
    else if (rel >= hi) h.above++;
    else {
      // floating-point log can land one bin off at an edge: settle it against the edges themselves
      let b = Math.min(bins - 1, Math.max(0, Math.floor((Math.log(rel) - logLo) / width)));
      while (b > 0 && rel < edges[b]!) b--;
      while (b < bins - 1 && rel >= edges[b + 1]!) b++;
      h.counts[b]!++;
    }
  }
  return h;
}
