// Normalization of the queries before retrieval (the paper's query BatchNorm, on by default).
//
// T tokens, F query features (h * 2 * dk, in the layer's internal (head, half, dk) order).
//
// batch: training normalizes with the batch's statistics over all T tokens (biased variance, as
//   PyTorch) and moves running statistics by `momentum` (unbiased variance, as PyTorch); evaluation
//   normalizes with the running statistics.
// layer: each token over its F features (nn.LayerNorm(F)).
// none: identity.
import * as tf from '@tensorflow/tfjs-core';
import type { QueryNorm as QueryNormKind } from './config.js';

export interface QueryNormOptions {
  kind: QueryNormKind;
  features: number;
  momentum: number;
  eps: number;
  /** Variable name prefix (tfjs variable names are process-global; keep them unique). */
  name: string;
}

export class QueryNorm {
  readonly kind: QueryNormKind;
  readonly features: number;
  readonly momentum: number;
  readonly eps: number;
  /** gamma [F] (absent for 'none'). */
  readonly weight: tf.Variable<tf.Rank.R1> | undefined;
  /** beta [F] (absent for 'none'). */
  readonly bias: tf.Variable<tf.Rank.R1> | undefined;
  /** Running mean [F] ('batch' only); not trainable. */
  readonly runningMean: tf.Variable<tf.Rank.R1> | undefined;
  /** Running (unbiased) variance [F] ('batch' only); not trainable. */
  readonly runningVar: tf.Variable<tf.Rank.R1> | undefined;

  constructor(options: QueryNormOptions) {
    const { kind, features: f, name } = options;
    this.kind = kind;
    this.features = f;
    this.momentum = options.momentum;
    this.eps = options.eps;
    if (kind === 'none') return;
    // tf.variable copies its initializer: release each one.
    const make = (value: number, trainable: boolean, suffix: string): tf.Variable<tf.Rank.R1> => {
      const init = tf.fill([f], value);
      const v = tf.variable(init, trainable, `${name}/${suffix}`) as tf.Variable<tf.Rank.R1>;
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
    if (!training) {
      return tf.tidy(() => {
        const scale = tf.mul(gamma, tf.rsqrt(tf.add(this.runningVar!, this.eps)));
        return tf.add(tf.mul(tf.sub(q, this.runningMean!), scale), beta) as tf.Tensor2D;
      });
    }
    if (tokens < 2) {
      throw new Error(`query BatchNorm in training needs more than one token per batch, got ${tokens} (use queryNorm 'layer' or 'none', or evaluation mode)`);
    }
    return tf.tidy(() => {
      const { y, mean, variance } = batchNormTraining(q, gamma, beta, this.eps);
      if (updateRunning) this.updateRunningStats(mean, variance, tokens);
      return y;
    });
  }

  private updateRunningStats(mean: Float64Array, biasedVar: Float64Array, tokens: number): void {
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

/**
 * BatchNorm with batch statistics, as one customGrad with the closed-form backward:
 *   xhat = (q - mean) rstd,  y = xhat gamma + beta,
 *   dbeta = sum_t dy,  dgamma = sum_t dy xhat,  dq = gamma rstd (dy - dbeta / T - xhat dgamma / T).
 * Both passes are JS loops over the [T, F] values with float64 sums: on wasm, tfjs's reductions over
 * axis 0 transpose first, and the dozen element-wise ops of the two passes cost about 35 ms at
 * T = 512, F = 2048, where the loops take a few.
 */
function batchNormTraining(q: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): { y: tf.Tensor2D; mean: Float64Array; variance: Float64Array } {
  const [tokens, features] = q.shape;
  const mean = new Float64Array(features);
  const variance = new Float64Array(features);
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qIn, gIn, bIn] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
    const qv = qIn.dataSync() as Float32Array;
    const g = gIn.dataSync() as Float32Array;
    const b = bIn.dataSync() as Float32Array;
    for (let t = 0; t < tokens; t++) {
      const o = t * features;
      for (let j = 0; j < features; j++) mean[j]! += qv[o + j]!;
    }
    for (let j = 0; j < features; j++) mean[j]! /= tokens;
    for (let t = 0; t < tokens; t++) {
      const o = t * features;
      for (let j = 0; j < features; j++) {
        const c = qv[o + j]! - mean[j]!;
        variance[j]! += c * c;
      }
    }
    const rstd = new Float64Array(features);
    for (let j = 0; j < features; j++) {
      variance[j]! /= tokens;
      rstd[j] = 1 / Math.sqrt(variance[j]! + eps);
    }
    const xhat = new Float32Array(tokens * features);
    const y = new Float32Array(tokens * features);
    for (let t = 0; t < tokens; t++) {
      const o = t * features;
      for (let j = 0; j < features; j++) {
        const h = (qv[o + j]! - mean[j]!) * rstd[j]!;
        xhat[o + j] = h;
        y[o + j] = h * g[j]! + b[j]!;
      }
    }
    return {
      value: tf.tensor2d(y, [tokens, features]),
      gradFunc: (dy: tf.Tensor) => {
        const dyv = dy.dataSync() as Float32Array;
        const dbeta = new Float64Array(features);
        const dgamma = new Float64Array(features);
        for (let t = 0; t < tokens; t++) {
          const o = t * features;
          for (let j = 0; j < features; j++) {
            dbeta[j]! += dyv[o + j]!;
            dgamma[j]! += dyv[o + j]! * xhat[o + j]!;
          }
        }
        const dq = new Float32Array(tokens * features);
        for (let t = 0; t < tokens; t++) {
          const o = t * features;
          for (let j = 0; j < features; j++) {
            dq[o + j] = g[j]! * rstd[j]! * (dyv[o + j]! - dbeta[j]! / tokens - (xhat[o + j]! * dgamma[j]!) / tokens);
          }
        }
        return [tf.tensor2d(dq, [tokens, features]), tf.tensor1d(Float32Array.from(dgamma)), tf.tensor1d(Float32Array.from(dbeta))];
      },
    };
  });
  const y = norm(q, gamma, beta) as tf.Tensor2D;
  return { y, mean, variance };
}
