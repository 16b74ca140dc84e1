// Expert usage over an evaluation pass (paper, Table 2): accumulate each expert's router weight
// z'_i = sum over retrievals of g_i (0 when never retrieved), normalize z = z' / |z'|_1, then
//   usage       = fraction of experts with z_i > 0
//   unevenness  = KL(z || uniform) = log N + sum_i z_i log z_i      (0 for perfectly even use)
//   top-1% share = total z of the ceil(N / 100) heaviest experts
// plus hit counts and a histogram of z_i * N (1 = the uniform share) on log-spaced bins, and, for
// layers with several retrieval heads, how often a token's heads pick the same expert:
//   head overlap = share of retrievals whose expert another head of the same token also retrieved
// (0 when the heads always pick disjoint experts; heads that copy each other make it 1).
//
// Axes: N experts, L recorded retrievals, h heads, k retrievals per head.
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
  /**
   * Share of retrievals whose target another head of the same token also retrieved; only for
   * layers with several heads (undefined otherwise), NaN before any retrieval was recorded.
   */
  headOverlap?: number;
}

/** The usage report with the histogram and totals added. */
export interface UsageStatsReport extends UsageReport {
  histogram: UsageHistogram;
  /** Sum of all recorded weights. */
  totalWeight: number;
  /** Number of recorded retrievals. */
  retrievals: number;
  /** Retrievals left out for a non-finite weight (`skipNonFinite`). */
  skipped: number;
}

/** What a caller of a layer's `startUsage` may choose. */
export interface UsageOptions {
  /**
   * Leave out retrievals whose router weight is not finite instead of throwing (while training, a
   * diverging step produces them; the trainer then stops on the non-finite loss with its own error).
   */
  skipNonFinite?: boolean;
}

export interface UsageStatsOptions extends UsageOptions {
  /** Histogram bins (default 24). */
  histogramBins?: number;
  /** Histogram range of z_i * N (default [1e-3, 1e3]). */
  histogramRange?: [number, number];
  /**
   * Retrieval heads of the layer: each `record` call then holds whole tokens laid out [tokens, h, k],
   * and the report includes the head overlap. Leave out for a single head.
   */
  heads?: { count: number; perHead: number };
}

export class UsageStats {
  readonly count: number;
  private readonly weights: Float64Array;
  private readonly hits: Float64Array;
  private readonly bins: number;
  private readonly range: [number, number];
  private retrievals = 0;
  /** Retrievals per token (h * k) when heads are tracked. */
  private readonly perToken: number | undefined;
  /** Token stamp and count per target for the overlap count (empty without heads). */
  private readonly tokenStamp: Int32Array;
  private readonly seenCount: Int32Array;
  private stampNow = 0;
  private overlapping = 0;
  private grouped = 0;
  private readonly skipNonFinite: boolean;
  private skipped = 0;

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
    const heads = options.heads;
    if (heads !== undefined) {
      if (!Number.isSafeInteger(heads.count) || heads.count <= 0 || !Number.isSafeInteger(heads.perHead) || heads.perHead <= 0) {
        throw new Error(`UsageStats: heads must be { count, perHead } of positive integers, got ${JSON.stringify(heads)}`);
      }
    }
    this.perToken = heads && heads.count > 1 ? heads.count * heads.perHead : undefined;
    this.tokenStamp = new Int32Array(this.perToken !== undefined ? numExperts : 0);
    this.seenCount = new Int32Array(this.perToken !== undefined ? numExperts : 0);
    this.skipNonFinite = options.skipNonFinite ?? false;
  }

  /** Adds one retrieval of expert `indices[k]` with router weight `weights[k]` for every k. */
  record(indices: Int32Array, weights: Float32Array | Float64Array): void {
    if (indices.length !== weights.length) throw new Error(`UsageStats.record: ${indices.length} indices but ${weights.length} weights`);
    const perToken = this.perToken;
    if (perToken !== undefined && indices.length % perToken !== 0) {
      throw new Error(`UsageStats.record: ${indices.length} retrievals is not a whole number of tokens of ${perToken} (heads x per head)`);
    }
    const n = this.count;
    let skipped = 0;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      const g = weights[k]!;
      if (!(i >= 0 && i < n)) throw new Error(`UsageStats.record: indices[${k}] = ${i} is out of range [0, ${n})`);
      if (!(g >= 0 && g < Infinity)) {
        if (this.skipNonFinite && !Number.isFinite(g)) skipped++;
        else throw new Error(`UsageStats.record: weights[${k}] = ${g} (router weights must be finite and >= 0)`);
      }
    }
    const w = this.weights;
    const h = this.hits;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      const g = weights[k]!;
      if (skipped > 0 && !Number.isFinite(g)) continue;
      w[i]! += g;
      h[i]! += 1;
    }
    this.retrievals += indices.length - skipped;
    this.skipped += skipped;
    if (perToken !== undefined) this.countOverlap(indices, perToken);
  }

  /**
   * Per token: counts its h * k targets, then the retrievals whose target occurs more than once.
   * The per-target counters are reused across tokens through a token stamp (no clearing, no sort).
   */
  private countOverlap(indices: Int32Array, perToken: number): void {
    const stamp = this.tokenStamp;
    const seen = this.seenCount;
    let overlapping = 0;
    for (let t0 = 0; t0 < indices.length; t0 += perToken) {
      if (this.stampNow === 0x7fffffff) {
        stamp.fill(0);
        this.stampNow = 0;
      }
      const now = ++this.stampNow;
      const end = t0 + perToken;
      for (let j = t0; j < end; j++) {
        const e = indices[j]!;
        if (stamp[e] === now) seen[e]!++;
        else {
          stamp[e] = now;
          seen[e] = 1;
        }
      }
      for (let j = t0; j < end; j++) if (seen[indices[j]!]! > 1) overlapping++;
    }
    this.overlapping += overlapping;
    this.grouped += indices.length;
  }

  /** Forgets everything recorded. */
  reset(): void {
    this.weights.fill(0);
    this.hits.fill(0);
    this.retrievals = 0;
    this.overlapping = 0;
    this.grouped = 0;
    this.skipped = 0;
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
      skipped: this.skipped,
      ...(this.perToken !== undefined ? { headOverlap: this.grouped > 0 ? this.overlapping / this.grouped : NaN } : {}),
    };
  }
}
