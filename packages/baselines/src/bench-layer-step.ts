// One timing harness for a feed-forward layer's full training step: forward, backward (input
// gradient included, as inside a model), the dense Adam update of its tfjs variables, and its
// sparse step. Any layer that follows the feed-forward contract can be timed (the baselines here,
// PEER too); `benchBaselineLayer` builds the baselines at matched active parameters.
// The trainer's `peer-train bench layer --layer ffw|moe|moe-ec|pkm` calls `benchBaselineLayer`.
//
// T tokens, D model width.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@peer/backend';
import { DenseFfw } from './dense-ffw.js';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { MoeTokenChoice } from './moe-token-choice.js';
import { ProductKeyMemory } from './pkm.js';

/** What the harness needs of a layer (a structural subset of @peer/model's FeedForwardLayer). */
export interface BenchableLayer {
  readonly kind: string;
  readonly dim: number;
  apply(x: tf.Tensor3D, mode: { training: boolean }): { y: tf.Tensor3D; auxLoss?: tf.Scalar };
  trainableVariables(): tf.Variable[];
  sparseStep(lrScale: number): void;
  zeroSparseGrads(): void;
  flopsPerToken(): number;
  activeParamsPerToken(): number;
  totalParams(): number;
}

export interface TimeLayerStepOptions {
  /** Tokens per step, as one sequence. Default 512. */
  tokens?: number;
  /** Timed steps. Default 5. */
  steps?: number;
  /** Untimed steps first (kernel warm-up, first touches of optimizer state). Default 1. */
  warmup?: number;
  /** Learning rate of the dense Adam (tfjs's, one per variable). Default 1e-3. */
  denseLr?: number;
  /** Seed of the input and the output gradient. Default 1. */
  seed?: number;
  /** Called after each timed step. */
  onStep?: (step: number, ms: number) => void;
}

export interface LayerStepTiming {
  /** The layer's kind ('dense', 'moe', 'moe-ec', 'pkm', 'peer', ...). */
  layer: string;
  backend: string;
  dim: number;
  tokens: number;
  steps: number;
  ms_per_step_median: number;
  /**
   * Median process CPU time (user + system) per step. On a machine shared with other jobs it is
   * closer to the uncontended wall time than ms_per_step_median (the engine is single-threaded).
   */
  cpu_ms_per_step_median: number;
  tokens_per_second: number;
  /** Medians of the step's parts. */
  phases_ms_median: { forward_backward: number; dense_update: number; sparse_update: number };
  /** Median of a separate forward pass in training mode, without the gradient tape. */
  forward_ms_median: number;
  /** Peak resident set size of the process (setup included). */
  peak_rss_bytes: number;
  flops_per_token: number;
  active_params_per_token: number;
  total_params: number;
  step_ms: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function checkInt(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new Error(`timeLayerStep: ${name} must be an integer >= ${min}, got ${value}`);
}

/** Times training steps of `layer` on the current tfjs backend. The layer is not disposed. */
export async function timeLayerStep(layer: BenchableLayer, options: TimeLayerStepOptions = {}): Promise<LayerStepTiming> {
  const tokens = options.tokens ?? 512;
  const steps = options.steps ?? 5;
  const warmup = options.warmup ?? 1;
  checkInt('tokens', tokens, 2);
  checkInt('steps', steps, 1);
  checkInt('warmup', warmup, 0);
  const D = layer.dim;
  const rng = new Rng(options.seed ?? 1);
  const x = tf.tidy(() => tf.variable(tf.tensor3d(rng.fillNormal(new Float32Array(tokens * D)), [1, tokens, D]), true));
  // Loss sum(y * r) (+ the auxiliary loss): dy = r is a dense, non-trivial output gradient.
  const r = tf.tensor3d(rng.fillNormal(new Float32Array(tokens * D), 0, 1 / tokens), [1, tokens, D]);
  const vars = layer.trainableVariables();
  // One tfjs Adam per variable: a single applyGradients keeps every variable's temporaries alive
  // until it returns (about 8x the parameters; 2 GiB for 128 experts of 525k parameters), past
  // the wasm heap. Per-variable optimizers free them variable by variable; the math is the same.
  const optimizers: tf.Optimizer[] = vars.map(() => tf.train.adam(options.denseLr ?? 1e-3));
  const parts = { fb: [] as number[], dense: [] as number[], sparse: [] as number[], fwd: [] as number[] };
  const stepMs: number[] = [];
  const cpuMs: number[] = [];
  try {
    const step = (): [number, number, number] => {
      const t0 = performance.now();
      const { value, grads } = tf.variableGrads(() => {
        const out = layer.apply(x, { training: true });
        const loss = tf.sum(tf.mul(out.y, r)) as tf.Scalar;
        return out.auxLoss ? (tf.add(loss, out.auxLoss) as tf.Scalar) : loss;
      }, [x, ...vars]);
      // Reading the loss waits for the whole backward pass.
      value.dataSync();
      const t1 = performance.now();
      vars.forEach((v, i) => optimizers[i]!.applyGradients({ [v.name]: grads[v.name]! }));
      vars[0]?.dataSync();
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
      // Let the event loop breathe between steps (progress output, signals).
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (let i = 0; i < Math.min(steps, 3); i++) {
      const t0 = performance.now();
      tf.tidy(() => layer.apply(x, { training: true }).y.dataSync());
      parts.fwd.push(performance.now() - t0);
    }
    layer.zeroSparseGrads();
    const ms = median(stepMs);
    return {
      layer: layer.kind,
      backend: tf.getBackend(),
      dim: D,
      tokens,
      steps,
      ms_per_step_median: round(ms),
      cpu_ms_per_step_median: round(median(cpuMs)),
      tokens_per_second: round((tokens * 1000) / ms),
      phases_ms_median: { forward_backward: round(median(parts.fb)), dense_update: round(median(parts.dense)), sparse_update: round(median(parts.sparse)) },
      forward_ms_median: round(median(parts.fwd)),
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      flops_per_token: layer.flopsPerToken(),
      active_params_per_token: layer.activeParamsPerToken(),
      total_params: layer.totalParams(),
      step_ms: stepMs.map((v) => round(v)),
    };
  } finally {
    for (const o of optimizers) o.dispose();
    x.dispose();
    r.dispose();
  }
}

export const BASELINE_KINDS = ['ffw', 'moe', 'moe-ec', 'pkm'] as const;
export type BaselineKind = (typeof BASELINE_KINDS)[number];

/**
 * The benchmark configs, matched on active parameters per token to the dense FFW of width 4D
 * (2 * D * 4D + biases; 525,568 at D = 256):
 * - ffw: hidden 4D.
 * - moe: Switch, 16 experts of hidden 4D, top-1 (one expert per token, plus the router).
 * - moe-ec: expert choice, 16 experts of hidden 4D, capacity factor 1 (one expert per token on average).
 * - pkm: the paper's PKM (1024^2 memories, 8 heads, top-32, query BN) with dk = 24 so that query
 *   net + sub-keys + 256 value rows come to 557,824 at D = 256 (6% above the FFW).
 * `overrides` replace fields of these configs (e.g. { experts: 128 }).
 */
export function baselineBenchConfig(kind: BaselineKind, dim: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<BaselineKind, Record<string, unknown>> = {
    ffw: { dim, hidden: 4 * dim },
    moe: { dim, experts: 16, hidden: 4 * dim, topK: 1 },
    'moe-ec': { dim, experts: 16, hidden: 4 * dim, capacityFactor: 1 },
    pkm: { dim, memories: 1024 * 1024, heads: 8, topK: 32, dimKey: 24 },
  };
  if (!(kind in base)) throw new Error(`benchBaselineLayer: layer must be one of ${BASELINE_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  return { ...base[kind], ...overrides };
}

/** Builds a baseline layer from its kind and config (validated by the layer). */
export function createBaselineLayer(kind: BaselineKind, config: Record<string, unknown>): BenchableLayer & { dispose(): void } {
  switch (kind) {
    case 'ffw':
      return new DenseFfw(config as never);
    case 'moe':
      return new MoeTokenChoice(config as never);
    case 'moe-ec':
      return new MoeExpertChoice(config as never);
    case 'pkm':
      return new ProductKeyMemory(config as never);
  }
}

export interface BaselineBenchOptions extends TimeLayerStepOptions {
  layer: BaselineKind;
  /** Model width. Default 256. */
  dim?: number;
  /** Fields that replace the matched-parameter config of `baselineBenchConfig`. */
  overrides?: Record<string, unknown>;
}

export interface BaselineBenchResult extends Omit<LayerStepTiming, 'layer'> {
  layer: BaselineKind;
  config: Record<string, unknown>;
  /** Seconds spent building the layer (table initialization for PKM). */
  setup_seconds: number;
}

/** Builds the baseline `layer` at matched active parameters, times it, disposes it. */
export async function benchBaselineLayer(options: BaselineBenchOptions): Promise<BaselineBenchResult> {
  const config = baselineBenchConfig(options.layer, options.dim ?? 256, options.overrides);
  const t0 = performance.now();
  const layer = createBaselineLayer(options.layer, config);
  const setup = (performance.now() - t0) / 1000;
  try {
    const timing = await timeLayerStep(layer, options);
    return { ...timing, layer: options.layer, config, setup_seconds: round(setup, 2) };
  } finally {
    layer.dispose();
  }
}
