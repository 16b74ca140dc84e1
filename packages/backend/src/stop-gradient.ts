import * as tf from '@tensorflow/tfjs-core';

// The output has the input's shape, so the zero gradient can be shaped like `dy`.
const identityWithZeroGrad = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const input = args[0] as tf.Tensor;
  return { value: input.clone(), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] };
});

/**
 * Returns `x` unchanged in the forward pass and a zero gradient in the backward pass.
 * Use it for values computed from differentiated inputs that must not carry gradient, e.g. the
 * int32 indices of a top-k (tfjs's gradient code refuses int32 tensors on the tape).
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  // Non-float tensors never carry gradient; customGrad is only defined for float inputs.
  if (x.dtype !== 'float32') return tf.clone(x) as T;
  return identityWithZeroGrad(x) as T;
}
