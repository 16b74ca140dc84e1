// The query BatchNorm as tfjs ops on explicit tensors: PKM's form (QueryNorm's 'matmul' reductions),
// differentiable in q, gamma and beta whatever holds them; the evaluation form is every query
// BatchNorm's.
//
// Axes: T tokens, F query features.
//
// Training: y = (q - mean) / sqrt(var + eps) * gamma + beta with the batch's mean and biased
// variance over the T tokens; the running statistics move by `momentum` (running variance unbiased,
// as PyTorch). Evaluation uses the running statistics.
//
// The backward is the closed form (one customGrad):
//   dbeta = sum_t dy, dgamma = sum_t dy xhat, dq = gamma rstd (dy - dbeta / T - xhat dgamma / T).
// Sums over tokens are written as [1, T] x [T, F] products: reductions over axis 0 are slow on wasm.
import * as tf from '@tensorflow/tfjs-core';

export interface BatchNormResult {
  /** [T, F] */
  y: tf.Tensor2D;
  /** [F] batch mean and biased variance, off the tape (for the running statistics). */
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

/** Batch-statistics BatchNorm of q [T, F] (T >= 2), differentiable in q, gamma [F], beta [F]. */
export function batchNormTraining(q: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): BatchNormResult {
  const [tokens, features] = q.shape;
  if (tokens < 2) throw new Error(`query BatchNorm in training needs at least 2 tokens per batch, got ${tokens}`);
  let mean: tf.Tensor1D | undefined;
  let variance: tf.Tensor1D | undefined;
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qIn, gIn, bIn, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const average = tf.fill([1, tokens], 1 / tokens) as tf.Tensor2D;
    const m = tf.matMul(average, qIn);
    const centered = tf.sub(qIn, m);
    const v = tf.matMul(average, tf.square(centered));
    // The statistics leave the customGrad's scope: keep them, the caller disposes them.
    mean = tf.keep(tf.reshape(m, [features]) as tf.Tensor1D);
    variance = tf.keep(tf.reshape(v, [features]) as tf.Tensor1D);
    const rstd = tf.rsqrt(tf.add(v, eps));
    const xhat = tf.mul(centered, rstd);
    save([xhat, rstd, gIn]);
    return {
      value: tf.add(tf.mul(xhat, gIn), bIn),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const ones = tf.ones([1, tokens]) as tf.Tensor2D;
        const dbeta = tf.matMul(ones, dy as tf.Tensor2D);
        const dgamma = tf.matMul(ones, tf.mul(dy, sx) as tf.Tensor2D);
        const inner = tf.sub(tf.sub(dy, tf.mul(dbeta, 1 / tokens)), tf.mul(sx, tf.mul(dgamma, 1 / tokens)));
        return [tf.mul(inner, tf.mul(sr, sg)), tf.reshape(dgamma, [features]), tf.reshape(dbeta, [features])];
      },
    };
  });
  const y = norm(q, gamma, beta) as tf.Tensor2D;
  return { y, mean: mean!, variance: variance! };
}

/** Evaluation BatchNorm with fixed statistics. */
export function batchNormInference(q: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, runningMean: tf.Tensor1D, runningVar: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const scale = tf.mul(gamma, tf.rsqrt(tf.add(runningVar, eps)));
    return tf.add(tf.mul(tf.sub(q, runningMean), scale), beta) as tf.Tensor2D;
  });
}

/** running <- (1 - momentum) running + momentum batch, with the unbiased batch variance. */
export function updateRunningStats(runningMean: tf.Variable, runningVar: tf.Variable, batch: { mean: tf.Tensor1D; variance: tf.Tensor1D }, tokens: number, momentum: number): void {
  tf.tidy(() => {
    runningMean.assign(tf.add(tf.mul(runningMean, 1 - momentum), tf.mul(batch.mean, momentum)));
    runningVar.assign(tf.add(tf.mul(runningVar, 1 - momentum), tf.mul(batch.variance, (momentum * tokens) / (tokens - 1))));
  });
}
