// LayerNorm and RMSNorm over the last axis with hand-written gradients: autodiff through
// mean / variance / rsqrt records about 20 element-wise ops per norm, this records one node whose
// backward pass is 6-8 ops on the [T, D] rows.
// Axes: T rows (tokens), D features.
import * as tf from '@tensorflow/tfjs-core';
import { columnSums } from '@peer/backend';

export type NormKind = 'layernorm' | 'rmsnorm';

/**
 * LayerNorm: y = (x - mean) / sqrt(var + eps) * gamma + beta. With xhat the normalized rows and
 * g = dy * gamma: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dgamma = sum_T dy * xhat, dbeta = sum_T dy.
 */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, gi, bi] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
    const save = args[3] as tf.GradSaveFunc;
    const xc = tf.sub(xi, tf.mean(xi, -1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    const xhat = tf.mul(xc, rstd);
    save([xhat, rstd, gi]);
    return {
      value: tf.add(tf.mul(xhat, gi), bi),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, r, g] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const dg = tf.mul(dy, g);
        const inner = tf.sub(tf.sub(dg, tf.mean(dg, -1, true)), tf.mul(xh, tf.mean(tf.mul(dg, xh), -1, true)));
        return [tf.mul(inner, r), columnSums(tf.mul(dy, xh) as tf.Tensor2D), columnSums(dy as tf.Tensor2D)];
      },
    };
  });
  return f(x, gamma, beta) as tf.Tensor2D;
}

/** RMSNorm: y = x / sqrt(mean(x^2) + eps) * gamma; dx = rstd * (g - xhat * mean(g * xhat)), dgamma = sum_T dy * xhat. */
export function rmsNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, eps: number): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, gi] = args as [tf.Tensor2D, tf.Tensor1D];
    const save = args[2] as tf.GradSaveFunc;
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(xi), -1, true), eps));
    const xhat = tf.mul(xi, rstd);
    save([xhat, rstd, gi]);
    return {
      value: tf.mul(xhat, gi),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, r, g] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const dg = tf.mul(dy, g);
        const inner = tf.sub(dg, tf.mul(xh, tf.mean(tf.mul(dg, xh), -1, true)));
        return [tf.mul(inner, r), columnSums(tf.mul(dy, xh) as tf.Tensor2D)];
      },
    };
  });
  return f(x, gamma) as tf.Tensor2D;
}
