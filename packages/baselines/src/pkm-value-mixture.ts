// The memory read of the PKM layer with a hand-written backward pass, on the value table's
// gather-mixture primitives (the v-half of PEER's expert mixture; @peer/expert-store owns the
// products and runs them where the rows live).
//
// Axes: T tokens, R = h*k slots read per token, D model width, N memory slots.
//
//   y[t] = sum_r w[t, r] * V[idx[t, r]]        V: the value table [N, D], outside tfjs
//
// Backward returns dw[t, r] = dy[t] . V[idx[t, r]] to the tape and hands the value-row gradients
// sum_{(t, r) -> e} w[t, r] dy[t] (each distinct row once) to a row-gradient sink: no dense [N, D]
// gradient and no [T*R, D] tensor is ever built.
import * as tf from '@tensorflow/tfjs-core';
import type { ExpertTable, RowGradientSink } from '@peer/expert-store';

export type { RowGradientSink } from '@peer/expert-store';

/**
 * y [T, D] = sum_r w[t, r] V[indices[t * R + r]]. Differentiable in `weights` [T, R]; the value
 * rows' gradient goes to `sink` when the backward pass runs (which reads the table as it is then:
 * apply sparse updates only after the backward pass). `indices` is an Int32Array for host tables,
 * an int32 tensor (T * R elements) for device tables, which never read it back.
 */
export function valueMixture(weights: tf.Tensor2D, indices: Int32Array | tf.Tensor, table: ExpertTable, sink: RowGradientSink): tf.Tensor2D {
  const [T, R] = weights.shape;
  const count = indices instanceof Int32Array ? indices.length : indices.size;
  if (count !== T * R) throw new Error(`valueMixture: ${count} indices for weights of shape [${T}, ${R}], expected ${T * R}`);
  if (!(indices instanceof Int32Array) && indices.dtype !== 'int32') throw new Error(`valueMixture: indices must be int32, got ${indices.dtype}`);
  // A host selection copies the rows' indices, so one serves both passes. An index tensor is saved
  // for the backward pass instead (customGrad keeps it alive until then) and selected again there.
  const selection = indices instanceof Int32Array ? table.select(indices, R) : undefined;
  const read = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [w, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    save(selection ? [w] : [w, indices as tf.Tensor]);
    return {
      value: table.weightedRowSum(selection ?? table.select(indices, R), w),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dy2 = dy as tf.Tensor2D;
        const rows = selection ?? table.select(saved[1]!, R);
        return [table.rowDotsAndGradients(rows, dy2, saved[0] as tf.Tensor2D, sink)];
      },
    };
  });
  return read(weights) as tf.Tensor2D;
}
