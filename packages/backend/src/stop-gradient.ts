import * as tf from '@tensorflow/tfjs-core';

// The output has the input's shape, so the zero gradient can be shaped like `dy`.
const identityWithZeroGrad = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const input = args[0] as tf.Tensor;
  return { value: input.clone(), gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)] };
});

/**
 * A copy of `x` whose tape node has no inputs, so nothing downstream of it is connected to the
 * differentiated variables. The closure, not an argument, carries `x` into the forward pass, and
 * ops inside a custom gradient's forward pass are not recorded.
 */
function detachedCopy<T extends tf.Tensor>(x: T): T {
  return tf.customGrad(() => ({ value: x.clone(), gradFunc: () => [] }))() as T;
}

/**
 * Returns `x` unchanged in the forward pass and a zero gradient in the backward pass.
 * Use it for values computed from differentiated inputs that must not carry gradient, e.g. the
 * int32 indices of a top-k: tfjs's gradient code throws when an int32 tensor derived from a
 * differentiated input reaches an op such as gather, so non-float tensors are cut from the tape.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  if (x.dtype !== 'float32') return detachedCopy(x);
  return identityWithZeroGrad(x) as T;
}
