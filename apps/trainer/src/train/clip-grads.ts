// Gradient clipping by global norm over all dense gradients (the sparse tables clip nothing here).
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from '@peer/backend';

/**
 * Inputs of one addN on a device engine: its program binds every input as a storage buffer, and
 * WebGPU's default limit is 8 storage buffers per shader stage (the output takes one).
 */
const DEVICE_ADDN_INPUTS = 4;

/** addN of any number of same-shape tensors; on a device engine as a tree of small addNs. */
function addMany(xs: tf.Tensor[]): tf.Tensor {
  if (!onDevice() || xs.length <= DEVICE_ADDN_INPUTS) return xs.length === 1 ? xs[0]! : tf.addN(xs);
  const partial: tf.Tensor[] = [];
  for (let i = 0; i < xs.length; i += DEVICE_ADDN_INPUTS) partial.push(addMany(xs.slice(i, i + DEVICE_ADDN_INPUTS)));
  return addMany(partial);
}

/** sqrt(sum of squares) over every gradient, as a tensor (read it when and how the engine allows). */
export function globalNorm(grads: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    const squares = grads.map((g) => tf.sum(tf.square(g)));
    // wasm and cpu keep the one addN (its summation order is part of the reproducible numbers)
    return tf.sqrt(onDevice() ? addMany(squares) : tf.addN(squares)) as tf.Scalar;
  });
}

/**
 * Returns the gradients scaled by `min(1, maxNorm / norm)`, `norm` being their global norm read by
 * the caller. `maxNorm <= 0` turns clipping off. The caller owns the returned tensors (new ones even
 * when nothing was scaled, so the caller can always dispose both lists).
 */
export function clipToNorm(grads: readonly tf.Tensor[], norm: number, maxNorm: number): tf.Tensor[] {
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  return grads.map((g) => (scale === 1 ? tf.clone(g) : tf.mul(g, scale)));
}

/**
 * `clipToNorm` with the norm read synchronously (wasm and cpu engines); returns the norm before
 * clipping too.
 */
export function clipByGlobalNorm(grads: readonly tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: number } {
  const normT = globalNorm(grads);
  const norm = normT.dataSync()[0]!;
  normT.dispose();
  return { grads: clipToNorm(grads, norm, maxNorm), norm };
}
