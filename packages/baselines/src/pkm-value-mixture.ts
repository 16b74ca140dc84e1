// The memory read of the PKM layer with a hand-written backward pass.
//
// Axes: T tokens, R = h*k slots read per token, D model width, N memory slots.
//
//   y[t] = sum_r w[t, r] * V[idx[t, r]]        V: the value table [N, D], outside tfjs
//
// Forward gathers the R rows of each token from the ExpertTable (row copies) and contracts them
// with the weights as one batched [1, R] x [R, D] product per token. Backward returns
// dw[t, r] = dy[t] . V[idx[t, r]] to the tape and hands the value-row gradients
// w[t, r] * dy[t] ([T*R, D], repeated rows summed by the sink) to a row-sparse accumulator:
// no dense [N, D] gradient is ever built.
import * as tf from '@tensorflow/tfjs-core';
import type { ExpertTable } from '@peer/expert-store';

/** Where backward passes send the value-row gradients (a RowSparseGrad, or a test's recorder). */
export interface RowGradientSink {
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
}

/**
 * y [T, D] = sum_r w[t, r] V[indices[t * R + r]]. Differentiable in `weights` [T, R]; the value rows'
 * gradient goes to `sink` when the backward pass runs.
 */
export function valueMixture(weights: tf.Tensor2D, indices: Int32Array, table: ExpertTable, sink: RowGradientSink): tf.Tensor2D {
  const [T, R] = weights.shape;
  const D = table.dim;
  if (indices.length !== T * R) throw new Error(`valueMixture: ${indices.length} indices for weights of shape [${T}, ${R}], expected ${T * R}`);
  const read = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [w, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const rows = tf.reshape(table.gather(indices), [T, R, D]) as tf.Tensor3D;
    const y = tf.reshape(tf.matMul(tf.reshape(w, [T, 1, R]) as tf.Tensor3D, rows), [T, D]);
    save([w, rows]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sw, srows] = saved as [tf.Tensor2D, tf.Tensor3D];
        const dy3 = tf.reshape(dy, [T, D, 1]) as tf.Tensor3D;
        const dw = tf.reshape(tf.matMul(srows, dy3), [T, R]);
        // Outer products w[t, :]^T dy[t]: [T, R, 1] x [T, 1, D].
        const rowGrads = tf.matMul(tf.reshape(sw, [T, R, 1]) as tf.Tensor3D, tf.reshape(dy, [T, 1, D]) as tf.Tensor3D);
        sink.accumulate(indices, rowGrads.dataSync() as Float32Array);
        return [dw];
      },
    };
  });
  return read(weights) as tf.Tensor2D;
}
