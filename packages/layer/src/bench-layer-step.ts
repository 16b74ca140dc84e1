// A full training step of one PEER layer alone, timed: forward, backward (input gradient included,
// as inside a model), the dense Adam update of the tfjs variables, and the sparse update of both
// expert tables. The trainer's `peer-train bench layer --layer peer` calls `benchLayerStep`.
//
// T tokens, D model width.
import * as tf from '@tensorflow/tfjs-core';
import { loadavg } from 'node:os';
import { heapStats, Rng } from '@peer/backend';
import type { PeerLayerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';

export interface LayerStepBenchOptions {
  /** The layer; `seed` defaults to 0. */
  layer: PeerLayerConfig;
  /** Tokens per step (one sequence of this length). Default 512. */
  tokens?: number;
  /** Timed steps. Default 5. */
  steps?: number;
  /** Untimed steps first (page faults of fresh tables and optimizer moments, kernel warm-up). Default 1. */
  warmup?: number;
  /**
   * Touch every page of the tables' optimizer state before timing (default true). A fresh Float32Array
   * is lazily mapped zero pages: a short run would time page faults on first touches of the moment
   * rows (and report an RSS below the state's size), where a long training run has touched them all.
   */
  prefault?: boolean;
  /** Learning rate of the dense Adam. Default 1e-3. */
  denseLr?: number;
  /** Called after each timed step. */
  onStep?: (step: number, ms: number) => void;
}

export interface LayerStepBenchResult {
  layer: 'peer';
  backend: string;
  num_experts: number;
  dim: number;
  heads: number;
  topk: number;
  dim_key: number;
  tokens: number;
  steps: number;
  ms_per_step_median: number;
  /**
   * Median CPU time (user + system) of the process per step. The layer runs on one thread, so on a
   * machine shared with other work this is the better estimate of the one-core step time.
   */
  cpu_ms_per_step_median: number;
  tokens_per_second: number;
  /** Medians of the step's parts. */
  phases_ms_median: { forward_backward: number; dense_update: number; sparse_update: number };
  /** Median of a separate forward pass in training mode, without the gradient tape. */
  forward_ms_median: number;
  /** Peak resident set size of the process (setup included). */
  peak_rss_bytes: number;
  /** u and v tables. */
  table_bytes: number;
  /** Sparse optimizer state of both tables (Adam: two moments each). */
  optimizer_state_bytes: number;
  /** peak_rss_bytes / (table_bytes + optimizer_state_bytes). */
  rss_ratio: number;
  /** Size of the tfjs wasm heap after the run (it never shrinks: its high-water mark); 0 elsewhere. */
  wasm_heap_bytes: number;
  /** Memory of the expert-mixture row kernels (gathered rows and row gradients). */
  kernel_bytes: number;
  step_ms: number[];
  /** The machine's 1-minute load average at the end (other processes inflate wall times). */
  load_average: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs the benchmark on the current tfjs backend and returns the measurements. */
export async function benchLayerStep(options: LayerStepBenchOptions): Promise<LayerStepBenchResult> {
  const tokens = options.tokens ?? 512;
  const steps = options.steps ?? 5;
  const warmup = options.warmup ?? 1;
  if (!Number.isInteger(tokens) || tokens < 2) throw new Error(`benchLayerStep: tokens must be an integer >= 2, got ${tokens}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`benchLayerStep: steps must be a positive integer, got ${steps}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`benchLayerStep: warmup must be an integer >= 0, got ${warmup}`);
  const layer = new PeerLayer(options.layer);
  const c = layer.config;
  if (options.prefault ?? true) {
    for (const entry of layer.expertOptimizer.stateEntries()) touchPages(entry.data as Float32Array | Int32Array);
  }
  const rng = new Rng(c.seed + 1);
  const xInit = tf.tensor3d(rng.fillNormal(new Float32Array(tokens * c.dim), 0, 1), [1, tokens, c.dim]);
  const x = tf.variable(xInit, true);
  xInit.dispose();
  // The loss sum(y * r): its gradient dy = r is a dense, non-trivial output gradient.
  const r = tf.tensor3d(rng.fillNormal(new Float32Array(tokens * c.dim), 0, 1 / tokens), [1, tokens, c.dim]);
  const optimizer = tf.train.adam(options.denseLr ?? 1e-3);
  const vars = layer.trainableVariables();
  const parts = { fb: [] as number[], dense: [] as number[], sparse: [] as number[], fwd: [] as number[] };
  const stepMs: number[] = [];
  const cpuMs: number[] = [];
  try {
    const step = (): [number, number, number] => {
      const t0 = performance.now();
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x, { training: true }).y, r)) as tf.Scalar, [x, ...vars]);
      // Reading the loss waits for the whole backward pass.
      value.dataSync();
      const t1 = performance.now();
      optimizer.applyGradients(vars.map((v) => ({ name: v.name, tensor: grads[v.name]! })));
      vars[0]!.dataSync();
      const t2 = performance.now();
      tf.dispose([value, ...Object.values(grads)]);
      layer.sparseStep(1);
      const t3 = performance.now();
      return [t1 - t0, t2 - t1, t3 - t2];
    };
    for (let i = 0; i < warmup; i++) step();
    for (let i = 0; i < steps; i++) {
      const cpu0 = process.cpuUsage();
      const [fb, dense, sparse] = step();
      const cpu = process.cpuUsage(cpu0);
      cpuMs.push((cpu.user + cpu.system) / 1000);
      parts.fb.push(fb);
      parts.dense.push(dense);
      parts.sparse.push(sparse);
      stepMs.push(fb + dense + sparse);
      options.onStep?.(i, fb + dense + sparse);
    }
    for (let i = 0; i < Math.min(steps, 3); i++) {
      const t0 = performance.now();
      tf.tidy(() => layer.apply(x, { training: true }).y.dataSync());
      parts.fwd.push(performance.now() - t0);
    }
    layer.zeroSparseGrads();
    const ms = median(stepMs);
    const tableBytes = 2 * c.tableRows * c.dim * 4;
    const optimizerBytes = c.expertOptimizer.kind === 'adam' ? 2 * tableBytes : 0;
    const peak = process.resourceUsage().maxRSS * 1024;
    return {
      layer: 'peer',
      backend: tf.getBackend(),
      num_experts: c.numExperts,
      dim: c.dim,
      heads: c.heads,
      topk: c.topK,
      dim_key: c.dimKey,
      tokens,
      steps,
      ms_per_step_median: round(ms),
      cpu_ms_per_step_median: round(median(cpuMs)),
      tokens_per_second: round((tokens * 1000) / ms),
      phases_ms_median: { forward_backward: round(median(parts.fb)), dense_update: round(median(parts.dense)), sparse_update: round(median(parts.sparse)) },
      forward_ms_median: round(median(parts.fwd)),
      peak_rss_bytes: peak,
      table_bytes: tableBytes,
      optimizer_state_bytes: optimizerBytes,
      rss_ratio: round(peak / (tableBytes + optimizerBytes), 3),
      wasm_heap_bytes: heapStats()?.heapBytes ?? 0,
      kernel_bytes: layer.workspaceBytes,
      step_ms: stepMs.map((v) => round(v)),
      load_average: round(loadavg()[0]!, 2),
    };
  } finally {
    optimizer.dispose();
    x.dispose();
    r.dispose();
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
