// Normalization of the queries before retrieval (the query BatchNorm of PEER and of PKM, on by
// default in both).
//
// Axes: T tokens, F query features (h * 2 * dk, in the caller's order).
//
// batch: training normalizes with the batch's statistics over all T tokens (biased variance, as
//   PyTorch) and moves running statistics by `momentum` (unbiased variance, as PyTorch); evaluation
//   normalizes with the running statistics.
// layer: each token over its F features (nn.LayerNorm(F)).
// none: identity.
//
// Two ways to compute the training pass, which round differently; each layer keeps the one it has
// always trained with, so that its runs reproduce bit for bit:
//   'column-kernels' (PEER, the default): the sums over tokens and the element-wise passes are SIMD
//     column kernels (query-norm-kernels.ts), run in place on the wasm engine's heap, or on a copy
//     in a small wasm memory of their own on other host engines (the same passes, the same bits);
//     the running statistics move in float64 on the host.
//   'matmul' (PKM): tfjs ops, sums over tokens as [1, T] x [T, F] products (query-norm-ops.ts); the
//     running statistics move as float32 tfjs ops. Also every layer's form on a device engine
//     (webgpu), where the column kernels cannot read the queries: nothing leaves the device there.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from '@peer/backend';
import { engineHeap, type EngineHeap } from '@peer/backend/wasm';
import { QueryNormKernels, type Region } from './query-norm-kernels.js';
import { batchNormInference, batchNormTraining, updateRunningStats } from './query-norm-ops.js';

export const QUERY_NORM_KINDS = ['batch', 'layer', 'none'] as const;
export type QueryNormKind = (typeof QUERY_NORM_KINDS)[number];

/** How the training pass of 'batch' reduces over tokens (see the file comment). */
export type QueryNormReductions = 'column-kernels' | 'matmul';

export interface QueryNormOptions {
  kind: QueryNormKind;
  features: number;
  momentum: number;
  eps: number;
  /** Variable name prefix (tfjs variable names are process-global; keep them unique); default: tfjs's unique names. */
  name?: string;
  /** Default 'column-kernels'. */
  reductions?: QueryNormReductions;
}

let heapDisabled = false;

/** Tests only: run the column kernels on a copy in their own memory even on the wasm engine. */
export function disableHeapQueryNorm(value: boolean): void {
  heapDisabled = value;
}

export class QueryNorm {
  readonly kind: QueryNormKind;
  readonly features: number;
  readonly momentum: number;
  readonly eps: number;
  readonly reductions: QueryNormReductions;
  /** gamma [F] (absent for 'none'). */
  readonly weight: tf.Variable<tf.Rank.R1> | undefined;
  /** beta [F] (absent for 'none'). */
  readonly bias: tf.Variable<tf.Rank.R1> | undefined;
  /** Running mean [F] ('batch' only); not trainable. */
  readonly runningMean: tf.Variable<tf.Rank.R1> | undefined;
  /** Running (unbiased) variance [F] ('batch' only); not trainable. */
  readonly runningVar: tf.Variable<tf.Rank.R1> | undefined;
  /** SIMD kernels and their memory for the training-mode passes (created on first use). */
  private kernels: QueryNormKernels | undefined;

  constructor(options: QueryNormOptions) {
    const { kind, features: f, name } = options;
    this.kind = kind;
    this.features = f;
    this.momentum = options.momentum;
    this.eps = options.eps;
    this.reductions = options.reductions ?? 'column-kernels';
    if (kind === 'none') return;
    // tf.variable copies its initializer: release each one.
    const make = (value: number, trainable: boolean, suffix: string): tf.Variable<tf.Rank.R1> => {
      const init = tf.fill([f], value);
      const v = tf.variable(init, trainable, name === undefined ? undefined : `${name}/${suffix}`) as tf.Variable<tf.Rank.R1>;
      init.dispose();
      return v;
    };
    this.weight = make(1, true, 'weight');
    this.bias = make(0, true, 'bias');
    if (kind === 'batch') {
      this.runningMean = make(0, false, 'running_mean');
      this.runningVar = make(1, false, 'running_var');
    }
  }

  /** gamma and beta (nothing for 'none'). */
  trainableVariables(): tf.Variable[] {
    return this.weight && this.bias ? [this.weight, this.bias] : [];
  }

  /** Every variable, running statistics included. */
  variables(): tf.Variable[] {
    return [this.weight, this.bias, this.runningMean, this.runningVar].filter((v): v is tf.Variable<tf.Rank.R1> => v !== undefined);
  }

  /**
   * q [T, F] -> normalized [T, F]. Training with 'batch' normalizes with batch statistics and, when
   * `updateRunning` (default), moves the running statistics.
   */
  apply(q: tf.Tensor2D, training: boolean, updateRunning = true): tf.Tensor2D {
    if (this.kind === 'none') return q;
    const gamma = this.weight!;
    const beta = this.bias!;
    const tokens = q.shape[0];
    if (this.kind === 'layer') {
      return tf.tidy(() => {
        const { mean, variance } = tf.moments(q, 1, true);
        const normalized = tf.mul(tf.sub(q, mean), tf.rsqrt(tf.add(variance, this.eps)));
        return tf.add(tf.mul(normalized, gamma), beta) as tf.Tensor2D;
      });
    }
    if (!training) return batchNormInference(q, gamma, beta, this.runningMean!, this.runningVar!, this.eps);
    // The column kernels read q on the host; a device engine keeps the whole pass in tfjs ops.
    if (this.reductions === 'matmul' || onDevice()) {
      return tf.tidy(() => {
        const { y, mean, variance } = batchNormTraining(q, gamma, beta, this.eps);
        if (updateRunning) updateRunningStats(this.runningMean!, this.runningVar!, { mean, variance }, tokens, this.momentum);
        // batchNormTraining keeps the statistics out of every tidy: free them here.
        tf.dispose([mean, variance]);
        return y;
      });
    }
    if (tokens < 2) {
      throw new Error(`query BatchNorm in training needs more than one token per batch, got ${tokens} (use queryNorm 'layer' or 'none', or evaluation mode)`);
    }
    return tf.tidy(() => {
      const heap = this.features % 8 === 0 && !heapDisabled ? engineHeap() : undefined;
      const onHeap = heap && QueryNormKernels.onHeap(heap.memory);
      const { y, mean, variance } = onHeap
        ? batchNormTrainingOnHeap(q, gamma, beta, this.eps, heap!, onHeap)
        : batchNormTrainingKernels(q, gamma, beta, this.eps, (this.kernels ??= new QueryNormKernels()));
      if (updateRunning) this.moveRunningStats(mean, variance, tokens);
      return y;
    });
  }

  private moveRunningStats(mean: Float64Array, biasedVar: Float64Array, tokens: number): void {
    const m = this.momentum;
    const oldMean = this.runningMean!.dataSync();
    const oldVar = this.runningVar!.dataSync();
    const f = this.features;
    const newMean = new Float32Array(f);
    const newVar = new Float32Array(f);
    for (let j = 0; j < f; j++) {
      newMean[j] = (1 - m) * oldMean[j]! + m * mean[j]!;
      newVar[j] = (1 - m) * oldVar[j]! + m * biasedVar[j]! * (tokens / (tokens - 1));
    }
    tf.tidy(() => {
      this.runningMean!.assign(tf.tensor1d(newMean));
      this.runningVar!.assign(tf.tensor1d(newVar));
    });
  }

  dispose(): void {
    for (const v of this.variables()) v.dispose();
  }
}

/** The forward's regions: q, xhat and y [T, F] (xhat may be any scratch), and vectors [F]. */
interface ForwardRegions {
  q: Region;
  xhat: Region;
  y: Region;
  mean: Region;
  variance: Region;
  rstd: Region;
  zero: Region;
  one: Region;
  gamma: Region;
  beta: Region;
}

/** The batch statistics the forward computed: float64 for the running statistics, float32 as used. */
interface BatchStats {
  mean: Float64Array;
  variance: Float64Array;
  meanValues: Float32Array;
  rstdValues: Float32Array;
}

/**
 * The forward passes: mean, centered = q - mean, biased variance, xhat = centered * rstd,
 * y = xhat * gamma + beta (y may be q). Fills zero and one first.
 */
function forwardPasses(k: QueryNormKernels, r: ForwardRegions, tokens: number, features: number, eps: number): BatchStats {
  k.view(r.zero).fill(0);
  k.view(r.one).fill(1);
  k.colSum(r.q, r.mean, tokens, features);
  const m = k.view(r.mean);
  for (let j = 0; j < features; j++) m[j]! /= tokens;
  k.affine(r.q, r.mean, r.one, r.zero, r.xhat, tokens, features);
  k.colSumProd(r.xhat, r.xhat, r.variance, tokens, features);
  const v = k.view(r.variance);
  const rstd = k.view(r.rstd);
  for (let j = 0; j < features; j++) {
    v[j]! /= tokens;
    rstd[j] = 1 / Math.sqrt(v[j]! + eps);
  }
  const stats = { mean: Float64Array.from(m), variance: Float64Array.from(v), meanValues: m.slice(), rstdValues: rstd.slice() };
  k.affine(r.xhat, r.zero, r.rstd, r.zero, r.xhat, tokens, features);
  k.affine(r.xhat, r.zero, r.gamma, r.beta, r.y, tokens, features);
  return stats;
}

/** The backward's regions: dy, xhat and dq [T, F] (dq may be dy), and vectors [F]. */
interface BackwardRegions {
  dy: Region;
  xhat: Region;
  dq: Region;
  dbeta: Region;
  dgamma: Region;
  p: Region;
  q: Region;
  c: Region;
}

/** dbeta, dgamma and dq = gamma rstd (dy - dbeta / T - xhat dgamma / T); `gamma` and `rstd` as in the forward. */
function backwardPasses(k: QueryNormKernels, r: BackwardRegions, gamma: Float32Array, rstd: Float32Array, tokens: number, features: number): void {
  k.colSum(r.dy, r.dbeta, tokens, features);
  k.colSumProd(r.dy, r.xhat, r.dgamma, tokens, features);
  const dbeta = k.view(r.dbeta);
  const dgamma = k.view(r.dgamma);
  const [p, qv, c] = [k.view(r.p), k.view(r.q), k.view(r.c)];
  for (let j = 0; j < features; j++) {
    p[j] = dbeta[j]! / tokens;
    qv[j] = dgamma[j]! / tokens;
    c[j] = gamma[j]! * rstd[j]!;
  }
  k.bnGrad(r.dy, r.xhat, r.p, r.q, r.c, r.dq, tokens, features);
}

/**
 * `batchNormTrainingKernels` in place on the wasm engine's heap: the kernels read the queries, the
 * upstream gradient and gamma, beta where tfjs keeps them and write y and dq into new tensors there,
 * so no [T, F] matrix is copied between the engine and the kernels (on one thread those copies cost
 * about as much as the passes; product-keys README). The backward recomputes xhat from the saved
 * queries with the forward's two passes, which gives the same bits, rather than keeping a [T, F]
 * copy alive from the forward to the backward. The passes are those of `batchNormTrainingKernels`
 * (`forwardPasses`, `backwardPasses`): both give the same numbers.
 */
function batchNormTrainingOnHeap(
  q: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
  heap: EngineHeap,
  k: QueryNormKernels,
): { y: tf.Tensor2D; mean: Float64Array; variance: Float64Array } {
  const [tokens, features] = q.shape;
  let stats: BatchStats | undefined;
  const region = (t: tf.Tensor): Region => ({ offset: heap.offsetOf(t), length: t.size });
  /** `count` vectors [F] in one new tensor: the tensor and a region per vector. */
  const vectors = (count: number): [tf.Tensor, Region[]] => {
    const t = heap.output([count * features], 'float32');
    const at = heap.offsetOf(t);
    return [t, Array.from({ length: count }, (_, i) => ({ offset: at + 4 * i * features, length: features }))];
  };
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qIn, gIn, bIn, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    save([qIn]);
    const g = heap.floats(gIn).slice();
    const y = heap.output([tokens, features], 'float32');
    const x = heap.output([tokens, features], 'float32');
    const [vectorsTensor, [mean, variance, rstd, zero, one]] = vectors(5);
    try {
      // Regions after the last allocation (an allocation may grow the heap; offsets stay valid).
      const regions = { q: region(qIn), xhat: region(x), y: region(y), gamma: region(gIn), beta: region(bIn) };
      stats = forwardPasses(k, { ...regions, mean: mean!, variance: variance!, rstd: rstd!, zero: zero!, one: one! }, tokens, features, eps);
    } catch (err) {
      y.dispose();
      throw err;
    } finally {
      tf.dispose([x, vectorsTensor]);
    }
    const { meanValues, rstdValues } = stats;
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dq = heap.output([tokens, features], 'float32');
        const xhat = heap.output([tokens, features], 'float32');
        const [work, [dbeta, dgamma, p, qv, c, meanR, rstdR, zero2, one2]] = vectors(9);
        try {
          // xhat again, with the forward's passes and statistics.
          k.view(meanR!).set(meanValues);
          k.view(rstdR!).set(rstdValues);
          k.view(zero2!).fill(0);
          k.view(one2!).fill(1);
          const xr = region(xhat);
          k.affine(region(saved[0]!), meanR!, one2!, zero2!, xr, tokens, features);
          k.affine(xr, zero2!, rstdR!, zero2!, xr, tokens, features);
          backwardPasses(k, { dy: region(dy), xhat: xr, dq: region(dq), dbeta: dbeta!, dgamma: dgamma!, p: p!, q: qv!, c: c! }, g, rstdValues, tokens, features);
          // The [F] gradients are copied out (small) before the scratch tensor is freed.
          return [dq, tf.tensor1d(k.view(dgamma!).slice()), tf.tensor1d(k.view(dbeta!).slice())];
        } catch (err) {
          dq.dispose();
          throw err;
        } finally {
          tf.dispose([xhat, work]);
        }
      },
    };
  });
  const y = norm(q, gamma, beta) as tf.Tensor2D;
  return { y, mean: stats!.mean, variance: stats!.variance };
}

/**
 * BatchNorm with batch statistics, as one customGrad with the closed-form backward:
 *   xhat = (q - mean) rstd,  y = xhat gamma + beta,
 *   dbeta = sum_t dy,  dgamma = sum_t dy xhat,  dq = gamma rstd (dy - dbeta / T - xhat dgamma / T).
 * The passes over [T, F] are SIMD column kernels (query-norm-kernels.ts), here on copies in the
 * kernels' own memory: on wasm, tfjs reduces over axis 0 by transposing first (timings in the
 * product-keys README).
 */
function batchNormTrainingKernels(
  q: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
  k: QueryNormKernels,
): { y: tf.Tensor2D; mean: Float64Array; variance: Float64Array } {
  const [tokens, features] = q.shape;
  let stats: BatchStats | undefined;
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qIn, gIn, bIn] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
    const g = gIn.dataSync() as Float32Array;
    k.reset();
    // Two [T, F] regions: q (then y, written over it) and xhat.
    const [qr, xr] = [0, 1].map(() => k.alloc(tokens * features)) as [Region, Region];
    const [mean, variance, rstd, zero, one, gammaR, betaR] = [0, 1, 2, 3, 4, 5, 6].map(() => k.alloc(features)) as Region[];
    k.view(qr).set(qIn.dataSync());
    k.view(gammaR!).set(g);
    k.view(betaR!).set(bIn.dataSync());
    stats = forwardPasses(k, { q: qr, xhat: xr, y: qr, mean: mean!, variance: variance!, rstd: rstd!, zero: zero!, one: one!, gamma: gammaR!, beta: betaR! }, tokens, features, eps);
    const { rstdValues } = stats;
    const xhat = k.view(xr).slice();
    return {
      value: tf.tensor2d(k.view(qr).slice(), [tokens, features]),
      gradFunc: (dy: tf.Tensor) => {
        k.reset();
        // Two [T, F] regions: dy (then dq, written over it) and xhat.
        const [dyr, xhr] = [0, 1].map(() => k.alloc(tokens * features)) as [Region, Region];
        const [dbeta, dgamma, p, qv, c] = [0, 1, 2, 3, 4].map(() => k.alloc(features)) as Region[];
        k.view(dyr).set(dy.dataSync());
        k.view(xhr).set(xhat);
        backwardPasses(k, { dy: dyr, xhat: xhr, dq: dyr, dbeta: dbeta!, dgamma: dgamma!, p: p!, q: qv!, c: c! }, g, rstdValues, tokens, features);
        return [tf.tensor2d(k.view(dyr).slice(), [tokens, features]), tf.tensor1d(k.view(dgamma!).slice()), tf.tensor1d(k.view(dbeta!).slice())];
      },
    };
  });
  const y = norm(q, gamma, beta) as tf.Tensor2D;
  return { y, mean: stats!.mean, variance: stats!.variance };
}
