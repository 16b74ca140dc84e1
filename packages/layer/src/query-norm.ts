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
    this.weight = tf.variable(tf.ones([f]), true, `${name}/weight`) as tf.Variable<tf.Rank.R1>;
    this.bias = tf.variable(tf.zeros([f]), true, `${name}/bias`) as tf.Variable<tf.Rank.R1>;
    if (kind === 'batch') {
      this.runningMean = tf.variable(tf.zeros([f]), false, `${name}/running_mean`) as tf.Variable<tf.Rank.R1>;
      this.runningVar = tf.variable(tf.ones([f]), false, `${name}/running_var`) as tf.Variable<tf.Rank.R1>;
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
      const mean = tf.mean(q, 0);
      const centered = tf.sub(q, mean);
      const variance = tf.mean(tf.square(centered), 0);
      if (updateRunning) this.updateRunningStats(mean, variance, tokens);
      const normalized = tf.mul(centered, tf.rsqrt(tf.add(variance, this.eps)));
      return tf.add(tf.mul(normalized, gamma), beta) as tf.Tensor2D;
    });
  }

  private updateRunningStats(mean: tf.Tensor, biasedVar: tf.Tensor, tokens: number): void {
    const m = this.momentum;
    // Running statistics are state: no gradient reaches them (they do not feed the output).
    const [newMean, newVar] = tf.tidy(() => {
      const unbiased = tf.mul(biasedVar, tokens / (tokens - 1));
      return [
        tf.add(tf.mul(this.runningMean!, 1 - m), tf.mul(mean, m)),
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
