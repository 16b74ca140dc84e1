// One timing harness for a feed-forward layer's full training step on the current tfjs engine:
// forward, backward (input gradient included, as inside a model), the dense Adam update of its tfjs
// variables (@peer/backend's `adamwUpdate`, the trainer's update, without decay), and its sparse step. Any feed-forward layer can be timed: the baselines, PEER, and
// a user's own. `benchLayerStep` (@peer/layer) and `benchBaselineLayer` (@peer/baselines) build
// their layers and call it.
//
// Axes: T tokens, D model width.
import * as tf from '@tensorflow/tfjs-core';
import { adamwUpdate, onDevice, Rng } from '@peer/backend';
import type { FeedForwardLayer } from './feed-forward-layer.js';

/**
 * What the harness uses of a layer: the contract's training-step members. `kind` is any string, so
 * that a layer not (yet) in the model's kinds can be timed too.
 */
export type BenchableLayer = Pick<
  FeedForwardLayer,
  'dim' | 'apply' | 'trainableVariables' | 'sparseStep' | 'zeroSparseGrads' | 'flopsPerToken' | 'activeParamsPerToken' | 'totalParams'
> & { readonly kind: string };

export interface TimeLayerStepOptions {
  /** Tokens per step, as one sequence. Default 512. */
  tokens?: number;
  /** Timed steps. Default 5. */
  steps?: number;
  /** Untimed steps first (kernel warm-up, first touches of optimizer state). Default 1. */
  warmup?: number;
  /** Learning rate of the dense Adam (betas 0.9 and 0.999, eps 1e-8, no weight decay). Default 1e-3. */
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
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`timeLayerStep: ${name} must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}, got ${value}`);
  }
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
  // Adam moments, one pair per variable, updated variable by variable (the temporaries of one
  // variable at a time; see the README).
  const moments = vars.map((v) => tf.tidy(() => [tf.variable(tf.zerosLike(v), false), tf.variable(tf.zerosLike(v), false)] as const));
  const adam = { lr: options.denseLr ?? 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
  let denseSteps = 0;
  const parts = { fb: [] as number[], dense: [] as number[], sparse: [] as number[], fwd: [] as number[] };
  const stepMs: number[] = [];
  const cpuMs: number[] = [];
  // Waiting for a tensor waits for the work queued before it. A device engine refuses synchronous
  // reads (and its queued sparse update finishes inside the next step's wait). wasm and cpu finish
  // every kernel before it returns, so there is nothing to wait for: reading a variable back there
  // only copied it (2 MiB for a PEER layer's query projection) inside the timed step.
  const device = onDevice();
  const synchronous = tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu';
  const wait = async (t: tf.Tensor | undefined): Promise<void> => {
    if (!t || synchronous) return;
    if (device) await t.data();
    else t.dataSync();
  };
  try {
    const step = async (): Promise<[number, number, number]> => {
      const t0 = performance.now();
      const { value, grads } = tf.variableGrads(() => {
        const out = layer.apply(x, { training: true });
        const loss = tf.sum(tf.mul(out.y, r)) as tf.Scalar;
        return out.auxLoss ? (tf.add(loss, out.auxLoss) as tf.Scalar) : loss;
      }, [x, ...vars]);
      // Reading the loss waits for the whole backward pass.
      await wait(value);
      const t1 = performance.now();
      denseSteps++;
      vars.forEach((v, i) => adamwUpdate(v, grads[v.name]!, moments[i]![0], moments[i]![1], { ...adam, step: denseSteps }));
      await wait(vars[0]);
      const t2 = performance.now();
      tf.dispose([value, ...Object.values(grads)]);
      layer.sparseStep(1);
      const t3 = performance.now();
      return [t1 - t0, t2 - t1, t3 - t2];
    };
    for (let i = 0; i < warmup; i++) await step();
    for (let i = 0; i < steps; i++) {
      const cpu0 = process.cpuUsage();
      const [fb, dense, sparse] = await step();
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
      const y = tf.tidy(() => layer.apply(x, { training: true }).y);
      await wait(y);
      y.dispose();
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
    tf.dispose(moments.flat());
    x.dispose();
    r.dispose();
  }
}
