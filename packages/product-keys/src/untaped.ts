import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `compute` out of sight of the gradient tape and returns its result with no tape ancestry.
 *
 * Why: top-k indices derived from differentiated inputs must not be on the tape. TopK has no
 * gradient, and int32 tensors that lead from a differentiated input to the loss make tfjs's
 * backprop throw (the gradient of GatherV2's `indices` input is int32). A caller of `retrieve`
 * gathers expert rows with the indices inside its own `tf.grad`, so the indices must be fresh
 * tensors. The engine records nothing while a kernel runs, and the forward function of a
 * `customGrad` runs as a kernel; with no inputs, its tape node connects to nothing. Nothing of
 * `compute` is saved for a backward pass either, which keeps memory flat on large batches.
 */
export function untaped<T extends tf.Tensor>(compute: () => T): T {
  const run = tf.customGrad((..._noInputs: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: compute(),
    // Never called: a node without inputs is never on a path from a differentiated input.
    gradFunc: () => [],
  }));
  return run() as T;
}
