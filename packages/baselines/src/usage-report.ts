// Routing statistics over an evaluation pass (the paper's Table 2): accumulated router weight and
// hit count per target (expert or memory slot), summarized as usage, unevenness and top-1% share.
//
// z'_i = sum over routed tokens of the router weight g_i(x); z = z' / |z'|_1;
// usage = #{i : z_i > 0} / N; unevenness = KL(z || uniform) = log N + sum_i z_i log z_i.
import type { UsageReport } from './feed-forward-types.js';

/** Summarizes per-target accumulated weights and hit counts. The arrays are kept (not copied). */
export function usageReport(weights: Float64Array, hits: Float64Array): UsageReport {
  const count = weights.length;
  if (hits.length !== count) throw new Error(`usageReport: hits has length ${hits.length}, weights ${count}`);
  let total = 0;
  let used = 0;
  for (let i = 0; i < count; i++) {
    const w = weights[i]!;
    if (w < 0 || Number.isNaN(w)) throw new Error(`usageReport: weights[${i}] = ${w}, router weights must be >= 0`);
    total += w;
    if (w > 0) used++;
  }
  let unevenness = 0;
  let top1PercentShare = 0;
  if (total > 0) {
    let plogp = 0;
    for (let i = 0; i < count; i++) {
      const z = weights[i]! / total;
      if (z > 0) plogp += z * Math.log(z);
    }
    unevenness = Math.log(count) + plogp;
    const topCount = Math.max(1, Math.ceil(count / 100));
    const sorted = Float64Array.from(weights).sort();
    let top = 0;
    for (let i = count - topCount; i < count; i++) top += sorted[i]!;
    top1PercentShare = top / total;
  }
  return { count, usage: count === 0 ? 0 : used / count, unevenness, top1PercentShare, weights, hits };
}

/** Accumulates router weight and hits per target between `start()` and `stop()`. */
export class UsageAccumulator {
  private weights: Float64Array | undefined;
  private hits: Float64Array | undefined;

  constructor(readonly count: number) {}

  get active(): boolean {
    return this.weights !== undefined;
  }

  start(): void {
    this.weights = new Float64Array(this.count);
    this.hits = new Float64Array(this.count);
  }

  /** One routed (target, weight) pair per entry; ignored unless started. */
  add(targets: ArrayLike<number>, weights: ArrayLike<number>): void {
    const w = this.weights;
    const h = this.hits;
    if (!w || !h) return;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      w[t] += weights[i]!;
      h[t]++;
    }
  }

  /** The report since `start()`; stops accumulating. Throws if never started. */
  stop(): UsageReport {
    if (!this.weights || !this.hits) throw new Error('stopUsage() called without startUsage()');
    const report = usageReport(this.weights, this.hits);
    this.weights = undefined;
    this.hits = undefined;
    return report;
  }
}
