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
      // Kept out of every scope by batchNormTraining: released here.
      mean.dispose();
      variance.dispose();
      return y;
    });
  }

  private updateRunningStats(mean: tf.Tensor2D, biasedVar: tf.Tensor2D, tokens: number): void {
    const m = this.momentum;
    // Running statistics are state: no gradient reaches them (they do not feed the output).
    const [newMean, newVar] = tf.tidy(() => {
      const unbiased = tf.mul(tf.reshape(biasedVar, [-1]), tokens / (tokens - 1));
      return [
        tf.add(tf.mul(this.runningMean!, 1 - m), tf.mul(tf.reshape(mean, [-1]), m)),
        tf.add(tf.mul(this.runningVar!, 1 - m), tf.mul(unbiased, m)),
      ];
    });
    this.runningMean!.assign(newMean as tf.Tensor1D);
    this.runningVar!.assign(newVar as tf.Tensor1D);
    newMean.dispose();
    newVar.dispose();
  }

  dispose(): void {
    for (const v of this.variables()) v.dispose();
  }
}

/**
 * BatchNorm with batch statistics, as one customGrad with the closed-form backward:
 *   xhat = (q - mean) rstd,  y = xhat gamma + beta,
 *   dbeta = sum_t dy,  dgamma = sum_t dy xhat,  dq = gamma rstd (dy - dbeta / T - xhat dgamma / T).
 * Sums over tokens are [1, T] x [T, F] products: on wasm a reduction over axis 0 transposes first and
 * runs about 50x slower than the product.
 */
function batchNormTraining(q: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): { y: tf.Tensor2D; mean: tf.Tensor2D; variance: tf.Tensor2D } {
  const tokens = q.shape[0];
  const stats: { mean?: tf.Tensor2D; variance?: tf.Tensor2D } = {};
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qIn, gIn, bIn, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const [xhat, rstd, y] = tf.tidy(() => {
      const average = tf.fill([1, tokens], 1 / tokens);
      const mean = tf.matMul(average, qIn) as tf.Tensor2D;
      const centered = tf.sub(qIn, mean);
      const variance = tf.matMul(average, tf.square(centered)) as tf.Tensor2D;
      stats.mean = tf.keep(mean);
      stats.variance = tf.keep(variance);
      const rstd = tf.rsqrt(tf.add(variance, eps));
      const xhat = tf.mul(centered, rstd);
      return [xhat, rstd, tf.add(tf.mul(xhat, gIn), bIn)];
    });
    save([xhat, rstd, gIn]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        return tf.tidy(() => {
          const ones = tf.ones([1, tokens]);
          const dbeta = tf.matMul(ones, dy as tf.Tensor2D);
          const dgamma = tf.matMul(ones, tf.mul(dy, sx));
          const inner = tf.sub(tf.sub(dy, tf.mul(dbeta, 1 / tokens)), tf.mul(sx, tf.mul(dgamma, 1 / tokens)));
          const dq = tf.mul(inner, tf.mul(sr, sg));
          return [dq, tf.reshape(dgamma, [-1]), tf.reshape(dbeta, [-1])];
        });
      },
    };
  });
  const y = norm(q, gamma, beta) as tf.Tensor2D;
  return { y, mean: stats.mean!, variance: stats.variance! };
}
