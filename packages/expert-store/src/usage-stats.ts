// Expert usage over an evaluation pass (paper, Table 2): accumulate each expert's router weight
// z'_i = sum over retrievals of g_i (0 when never retrieved), normalize z = z' / |z'|_1, then
//   usage       = fraction of experts with z_i > 0
//   unevenness  = KL(z || uniform) = log N + sum_i z_i log z_i      (0 for perfectly even use)
//   top-1% share = total z of the ceil(N / 100) heaviest experts
// plus hit counts and a histogram of z_i * N (1 = the uniform share) on log-spaced bins.
//
// Axes: N experts, L recorded retrievals.
import { usageHistogram, type UsageHistogram } from './usage-histogram.js';

export type { UsageHistogram };

/**
 * Routing statistics of one layer over an evaluation pass: what a feed-forward layer's `stopUsage()`
 * returns (the contract in @peer/feed-forward re-exports this type).
 */
export interface UsageReport {
  /** Number of routing targets N (experts or memory slots). */
  count: number;
  /** Fraction of targets with non-zero accumulated router weight (paper: "expert usage"). */
  usage: number;
  /** KL(z || uniform) of the normalized accumulated router weights in nats (paper: "unevenness"); NaN before any weight was recorded. */
  unevenness: number;
  /** Share of total router weight held by the top 1% of targets (at least one target); NaN before any weight was recorded. */
  top1PercentShare: number;
  /** Accumulated router weight per target (length `count`, a copy). */
  weights: Float64Array;
  /** Number of retrievals per target (length `count`, a copy). */
  hits: Float64Array;
}

/** The usage report with the histogram and totals added. */
export interface UsageStatsReport extends UsageReport {
  histogram: UsageHistogram;
  /** Sum of all recorded weights. */
  totalWeight: number;
  /** Number of recorded retrievals. */
  retrievals: number;
}

export interface UsageStatsOptions {
  /** Histogram bins (default 24). */
  histogramBins?: number;
  /** Histogram range of z_i * N (default [1e-3, 1e3]). */
  histogramRange?: [number, number];
}

export class UsageStats {
  readonly count: number;
  private readonly weights: Float64Array;
  private readonly hits: Float64Array;
  private readonly bins: number;
  private readonly range: [number, number];
  private retrievals = 0;

  constructor(numExperts: number, options: UsageStatsOptions = {}) {
    if (!Number.isSafeInteger(numExperts) || numExperts <= 0) throw new Error(`UsageStats: numExperts must be a positive integer, got ${numExperts}`);
    const bins = options.histogramBins ?? 24;
    if (!Number.isSafeInteger(bins) || bins <= 0) throw new Error(`UsageStats: histogramBins must be a positive integer, got ${bins}`);
    const range = options.histogramRange ?? [1e-3, 1e3];
    if (!(range[0] > 0 && range[1] > range[0] && Number.isFinite(range[1]))) {
      throw new Error(`UsageStats: histogramRange must be [lo, hi] with 0 < lo < hi, got ${JSON.stringify(range)}`);
    }
    this.count = numExperts;
    this.weights = new Float64Array(numExperts);
    this.hits = new Float64Array(numExperts);
    this.bins = bins;
    this.range = [range[0], range[1]];
  }

  /** Adds one retrieval of expert `indices[k]` with router weight `weights[k]` for every k. */
  record(indices: Int32Array, weights: Float32Array | Float64Array): void {
    if (indices.length !== weights.length) throw new Error(`UsageStats.record: ${indices.length} indices but ${weights.length} weights`);
    const n = this.count;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      const g = weights[k]!;
      if (!(i >= 0 && i < n)) throw new Error(`UsageStats.record: indices[${k}] = ${i} is out of range [0, ${n})`);
      if (!(g >= 0 && g < Infinity)) throw new Error(`UsageStats.record: weights[${k}] = ${g} (router weights must be finite and >= 0)`);
    }
    const w = this.weights;
    const h = this.hits;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      w[i]! += weights[k]!;
      h[i]! += 1;
    }
    this.retrievals += indices.length;
  }

  /** Forgets everything recorded. */
  reset(): void {
    this.weights.fill(0);
    this.hits.fill(0);
    this.retrievals = 0;
  }

  report(): UsageStatsReport {
    const n = this.count;
    const w = this.weights;
    let total = 0;
    let used = 0;
    for (let i = 0; i < n; i++) {
      total += w[i]!;
      if (w[i]! > 0) used++;
    }
    const histogram: UsageHistogram = usageHistogram(w, { bins: this.bins, range: this.range });
    let unevenness = NaN;
    let top1PercentShare = NaN;
    if (total > 0) {
      let sumZLogZ = 0;
      for (let i = 0; i < n; i++) {
        const z = w[i]! / total;
        if (z > 0) sumZLogZ += z * Math.log(z);
      }
      unevenness = Math.log(n) + sumZLogZ;
      const top = Math.max(1, Math.ceil(n / 100));
      const sorted = Float64Array.from(w).sort();
      let topSum = 0;
      for (let i = n - top; i < n; i++) topSum += sorted[i]!;
      top1PercentShare = topSum / total;
    }
    return {
      count: n,
      usage: used / n,
      unevenness,
      top1PercentShare,
      weights: Float64Array.from(w),
      hits: Float64Array.from(this.hits),
      histogram,
      totalWeight: total,
      retrievals: this.retrievals,
    };
  }
}
