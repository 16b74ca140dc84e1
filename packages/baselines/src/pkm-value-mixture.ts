// The memory read of the PKM layer with a hand-written backward pass, computed in plain JS
// straight from the value table.
//
// Axes: T tokens, R = h*k slots read per token, D model width, N memory slots.
//
//   y[t] = sum_r w[t, r] * V[idx[t, r]]        V: the value table [N, D], outside tfjs
//
// Backward returns dw[t, r] = dy[t] . V[idx[t, r]] to the tape and hands the value-row gradients
// w[t, r] * dy[t] (R rows per token; repeated rows are summed by the sink) to a row-sparse
// accumulator: no dense [N, D] gradient and no [T*R, D] tensor is ever built. The products run as
// JS loops over the table's own memory: reading T*R rows once each way is what the layer costs
// (tfjs would first copy the rows into a [T*R, D] tensor, and its batched [1, R] x [R, D]
// products have no fast path on wasm).
import * as tf from '@tensorflow/tfjs-core';
import type { HostExpertTable } from '@peer/expert-store';

/** Where backward passes send the value-row gradients (a RowSparseGrad, or a test's recorder). */
export interface RowGradientSink {
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
}

/**
 * Reads value rows: straight from the table's float32 memory, or copied out of half storage. The
 * view is taken again for every token: the row-gradient sink may grow the memory the table lives
 * in (the expert store's arena), which detaches views taken before.
 */
class RowReader {
  private readonly scratch: Float32Array;
  private readonly single = new Int32Array(1);
  view: Float32Array;
  offset = 0;

  constructor(private readonly table: HostExpertTable) {
    this.scratch = new Float32Array(table.dim);
    this.view = this.scratch;
  }

  /** Points `view` / `offset` at row `slot`. */
  select(slot: number, fresh: Float32Array | undefined): void {
    if (fresh) {
      this.view = fresh;
      this.offset = slot * this.table.dim;
    } else {
      this.single[0] = slot;
      this.table.gatherInto(this.single, this.scratch);
      this.view = this.scratch;
      this.offset = 0;
    }
  }

  /** The table's float32 rows as of now, or undefined for half storage. */
  rows(): Float32Array | undefined {
    return this.table.storage === 'float32' ? this.table.data : undefined;
  }
}

/**
 * y [T, D] = sum_r w[t, r] V[indices[t * R + r]]. Differentiable in `weights` [T, R]; the value
 * rows' gradient goes to `sink` when the backward pass runs (which reads the table as it is then:
 * apply sparse updates only after the backward pass).
 */
export function valueMixture(weights: tf.Tensor2D, indices: Int32Array, table: HostExpertTable, sink: RowGradientSink): tf.Tensor2D {
  const [T, R] = weights.shape;
  const D = table.dim;
  if (indices.length !== T * R) throw new Error(`valueMixture: ${indices.length} indices for weights of shape [${T}, ${R}], expected ${T * R}`);
  for (let i = 0; i < indices.length; i++) {
    const slot = indices[i]!;
    if (!(slot >= 0 && slot < table.rows)) throw new Error(`valueMixture: indices[${i}] = ${slot} is out of range [0, ${table.rows})`);
  }
  const read = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [w, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    save([w]);
    const wData = w.dataSync() as Float32Array;
    const y = new Float32Array(T * D);
    const reader = new RowReader(table);
    for (let t = 0; t < T; t++) {
      const yo = t * D;
      const rows = reader.rows();
      for (let r = 0; r < R; r++) {
        const g = wData[t * R + r]!;
        reader.select(indices[t * R + r]!, rows);
        const v = reader.view;
        const vo = reader.offset;
        for (let j = 0; j < D; j++) y[yo + j]! += g * v[vo + j]!;
      }
    }
    return {
      value: tf.tensor2d(y, [T, D]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dyData = dy.dataSync() as Float32Array;
        const ws = saved[0]!.dataSync() as Float32Array;
        const dw = new Float32Array(T * R);
        const rowGrads = new Float32Array(R * D);
        for (let t = 0; t < T; t++) {
          const yo = t * D;
          // Taken again after every accumulate: the sink may have grown the table's memory.
          const rows = reader.rows();
          for (let r = 0; r < R; r++) {
            reader.select(indices[t * R + r]!, rows);
            const v = reader.view;
            const vo = reader.offset;
            const g = ws[t * R + r]!;
            const go = r * D;
            let dot = 0;
            for (let j = 0; j < D; j++) {
              const d = dyData[yo + j]!;
              dot += d * v[vo + j]!;
              rowGrads[go + j] = g * d;
            }
            dw[t * R + r] = dot;
          }
          sink.accumulate(indices.subarray(t * R, (t + 1) * R), rowGrads);
        }
        return [tf.tensor2d(dw, [T, R])];
      },
    };
  });
  return read(weights) as tf.Tensor2D;
}
