// A full training step of one PEER layer alone, timed by @peer/feed-forward's `timeLayerStep` (forward,
// backward with the input gradient, the dense Adam update of the tfjs variables, the sparse update
// of both expert tables), plus what only PEER has: its tables' memory against peak RSS, and the
// wasm heap. The trainer's `peer-train bench layer --layer peer` calls `benchLayerStep`.
import { loadavg } from 'node:os';
import { heapStats } from '@peer/backend';
import { timeLayerStep, type LayerStepTiming, type TimeLayerStepOptions } from '@peer/feed-forward';
import type { PeerLayerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';

export interface LayerStepBenchOptions extends Omit<TimeLayerStepOptions, 'seed'> {
  /** The layer; `seed` defaults to 0 (the input and output gradient use seed + 1). */
  layer: PeerLayerConfig;
  /**
   * Touch every page of the tables' optimizer state before timing (default true). A fresh Float32Array
   * is lazily mapped zero pages: a short run would time page faults on first touches of the moment
   * rows (and report an RSS below the state's size), where a long training run has touched them all.
   */
  prefault?: boolean;
}

/** The harness's timing (see `LayerStepTiming`) with PEER's shape and memory in place of its cost counts. */
export interface LayerStepBenchResult extends Omit<LayerStepTiming, 'layer' | 'flops_per_token' | 'active_params_per_token' | 'total_params'> {
  layer: 'peer';
  num_experts: number;
  heads: number;
  topk: number;
  dim_key: number;
  /** u and v tables. */
  table_bytes: number;
  /** Sparse optimizer state of both tables (Adam: two moments each). */
  optimizer_state_bytes: number;
  /** peak_rss_bytes / (table_bytes + optimizer_state_bytes). */
  rss_ratio: number;
  /** Size of the tfjs wasm heap after the run (it never shrinks: its high-water mark); 0 elsewhere. */
  wasm_heap_bytes: number;
  /** The machine's 1-minute load average at the end (other processes inflate wall times). */
  load_average: number;
}

/** Runs the benchmark on the current tfjs backend and returns the measurements. */
export async function benchLayerStep(options: LayerStepBenchOptions): Promise<LayerStepBenchResult> {
  const layer = new PeerLayer(options.layer);
  const c = layer.config;
  try {
    // Device tables keep their optimizer state in GPU buffers: nothing to fault in on the host.
    if ((options.prefault ?? true) && layer.down.placement === 'host') {
      for (const entry of layer.expertOptimizer.stateEntries()) touchPages(entry.data as Float32Array | Int32Array);
    }
    const timing = await timeLayerStep(layer, { ...options, seed: c.seed + 1 });
    const tableBytes = 2 * c.tableRows * c.dim * 4;
    const optimizerBytes = c.expertOptimizer.kind === 'adam' ? 2 * tableBytes : 0;
    return {
      layer: 'peer',
      backend: timing.backend,
      num_experts: c.numExperts,
      dim: c.dim,
      heads: c.heads,
      topk: c.topK,
      dim_key: c.dimKey,
      tokens: timing.tokens,
      steps: timing.steps,
      ms_per_step_median: timing.ms_per_step_median,
      cpu_ms_per_step_median: timing.cpu_ms_per_step_median,
      tokens_per_second: timing.tokens_per_second,
      phases_ms_median: timing.phases_ms_median,
      forward_ms_median: timing.forward_ms_median,
      peak_rss_bytes: timing.peak_rss_bytes,
      table_bytes: tableBytes,
      optimizer_state_bytes: optimizerBytes,
      rss_ratio: round(timing.peak_rss_bytes / (tableBytes + optimizerBytes), 3),
      wasm_heap_bytes: heapStats()?.heapBytes ?? 0,
      step_ms: timing.step_ms,
      load_average: round(loadavg()[0]!, 2),
    };
  } finally {
    layer.dispose();
  }
}

/** Writes one element per 4 KiB page (its own value: nothing changes). */
function touchPages(data: Float32Array | Int32Array): void {
  for (let i = 0; i < data.length; i += 1024) data[i] = data[i]!;
  if (data.length > 0) data[data.length - 1] = data[data.length - 1]!;
}

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
