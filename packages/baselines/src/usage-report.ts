// Routing statistics over an evaluation pass (the paper's Table 2) for the baseline layers, on the
// expert store's UsageStats: per target (expert or memory slot) the accumulated router weight and
// hit count, summarized as usage, unevenness (KL to uniform), top-1% share and a histogram.
import { UsageStats, type UsageOptions, type UsageStatsOptions, type UsageStatsReport } from '@peer/expert-store';

/** Accumulates router weight and hits per target between `start()` and `stop()`. */
export class UsageAccumulator {
  private stats: UsageStats | undefined;

  /** `heads`: the retrieval heads of a layer whose routing records come [tokens, h, k] (for the head overlap). */
  constructor(
    readonly count: number,
    private readonly heads?: UsageStatsOptions['heads'],
  ) {}

  get active(): boolean {
    return this.stats !== undefined;
  }

  /** Starts (or restarts, forgetting what was recorded) accumulating. */
  start(options: UsageOptions = {}): void {
    this.stats = new UsageStats(this.count, { ...options, ...(this.heads ? { heads: this.heads } : {}) });
  }

  /** One routed (target, weight) pair per entry; ignored unless started. */
  add(targets: Int32Array, weights: Float32Array | Float64Array): void {
    this.stats?.record(targets, weights);
  }

  /** The report since `start()` (UsageReport fields plus histogram and totals); stops accumulating. */
  stop(): UsageStatsReport {
    if (!this.stats) throw new Error('stopUsage() called without startUsage()');
    const report = this.stats.report();
    this.stats = undefined;
    return report;
  }
}
