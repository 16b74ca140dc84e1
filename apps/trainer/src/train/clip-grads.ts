// Gradient clipping by global norm over all dense gradients (the sparse tables clip nothing here).
import * as tf from '@tensorflow/tfjs-core';

/**
 * Returns the gradients scaled by `min(1, maxNorm / norm)` and the norm before clipping.
 * `maxNorm <= 0` turns clipping off. The caller owns the returned tensors (new ones even when
 * nothing was scaled, so the caller can always dispose both lists).
 */
export function clipByGlobalNorm(grads: readonly tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: number } {
  const normT = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
  const norm = normT.dataSync()[0]!;
  normT.dispose();
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  const clipped = grads.map((g) => (scale === 1 ? tf.clone(g) : tf.mul(g, scale)));
  return { grads: clipped, norm };
}
