// TEMPORARY local stand-in for @peer/expert-store's UsageStats (the paper's Table 2 metrics).
// z'_i = sum_x g_i(x); z = z' / |z'|_1; usage = #{z_i > 0} / N; unevenness = log N + sum z log z.

export interface UsageReport {
  count: number;
  usage: number;
  unevenness: number;
  top1PercentShare: number;
  weights: Float64Array;
  hits: Float64Array;
}

export class UsageCounter {
  private readonly weights: Float64Array;
  private readonly hits: Float64Array;
  constructor(readonly count: number) {
    this.weights = new Float64Array(count);
    this.hits = new Float64Array(count);
  }

  record(indices: ArrayLike<number>, weights: ArrayLike<number>): void {
    for (let i = 0; i < indices.length; i++) {
      this.weights[indices[i]!]! += weights[i]!;
      this.hits[indices[i]!]! += 1;
    }
  }

  report(): UsageReport {
    const n = this.count;
    let total = 0;
    let used = 0;
    for (let i = 0; i < n; i++) {
      total += this.weights[i]!;
      if (this.weights[i]! > 0) used++;
    }
    let kl = Math.log(n);
    if (total > 0) for (let i = 0; i < n; i++) if (this.weights[i]! > 0) kl += (this.weights[i]! / total) * Math.log(this.weights[i]! / total);
    const sorted = Float64Array.from(this.weights).sort().reverse();
    const top = Math.max(1, Math.floor(n / 100));
    let topSum = 0;
    for (let i = 0; i < top; i++) topSum += sorted[i]!;
    return { count: n, usage: used / n, unevenness: total > 0 ? kl : 0, top1PercentShare: total > 0 ? topSum / total : 0, weights: this.weights, hits: this.hits };
  }
}
