// The expert mixture of a PEER layer, one tf.customGrad with a hand-written backward pass:
//   y[t] = sum_{r < R} g[t, r] * sigma(u_{e(t,r)} . x[t]) * v_{e(t,r)}
// where e(t, r) is the r-th retrieved expert of token t (R = h * k, all heads of the token).
//
// T tokens, R = h*k retrieved experts per token, D model width.
//
// The u and v rows are gathered from tables held outside tfjs (they are not tfjs variables): the
// backward pass returns dx and dg to autodiff and hands the row gradients dU, dV [T*R, D] to the
// tables' row-sparse accumulators as a side effect. No dense [N, D] gradient and no autodiff through
// the [T, R, D] gathers exist.
import * as tf from '@tensorflow/tfjs-core';
import { activationDerivative, activationForward } from './activation.js';
import type { ExpertActivation } from './config.js';

/** Gathers expert rows into a tfjs tensor (an `ExpertTable`). */
export interface ExpertRows {
  gather(indices: Int32Array): tf.Tensor2D;
}

/** Sums row gradients by index (a `RowSparseGrad`). */
export interface RowGradientSink {
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
}

export interface MixtureTables {
  /** u rows (the "down" table). */
  down: ExpertRows;
  /** v rows (the "up" table). */
  up: ExpertRows;
  downGrad: RowGradientSink;
  upGrad: RowGradientSink;
}

export interface MixtureOptions {
  activation: ExpertActivation;
  /** Keep the gathered rows from forward to backward instead of gathering again (faster, more memory). */
  keepRows: boolean;
}

/**
 * y [T, D] from x [T, D], router weights g [T, R] and the expert ids `indices` (T*R rows, row-major
 * [T, R]). Differentiable in x and g; backward accumulates the u and v row gradients into
 * `tables.downGrad` / `tables.upGrad`.
 */
export function expertMixture(
  x: tf.Tensor2D,
  g: tf.Tensor2D,
  indices: Int32Array,
  tables: MixtureTables,
  options: MixtureOptions,
): tf.Tensor2D {
  const [tokens, dim] = x.shape;
  const perToken = g.shape[1];
  if (g.shape[0] !== tokens) throw new Error(`expertMixture: g has ${g.shape[0]} tokens, x has ${tokens}`);
  if (indices.length !== tokens * perToken) {
    throw new Error(`expertMixture: ${indices.length} expert ids for ${tokens} tokens x ${perToken} experts`);
  }
  let kept: { u: tf.Tensor3D; v: tf.Tensor3D } | undefined;
  const gatherRows = () =>
    tf.tidy(() => ({
      u: tf.reshape(tables.down.gather(indices), [tokens, perToken, dim]) as tf.Tensor3D,
      v: tf.reshape(tables.up.gather(indices), [tokens, perToken, dim]) as tf.Tensor3D,
    }));

  const mixture = tf.customGrad((xIn: tf.Tensor, gIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const x2 = xIn as tf.Tensor2D;
    const g2 = gIn as tf.Tensor2D;
    const rows = gatherRows();
    // a[t, r] = u_e . x[t]
    const a = tf.sum(tf.mul(rows.u, tf.reshape(x2, [tokens, 1, dim])), 2) as tf.Tensor2D;
    // w[t, r] = g[t, r] sigma(a[t, r])
    const w = tf.mul(g2, activationForward(a, options.activation));
    // y[t] = sum_r w[t, r] v_e
    const y = tf.reshape(tf.matMul(tf.reshape(w, [tokens, 1, perToken]), rows.v), [tokens, dim]);
    if (options.keepRows) kept = { u: tf.keep(rows.u), v: tf.keep(rows.v) };
    save([x2, g2, a]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gs, as] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const dy2 = dy as tf.Tensor2D;
        const rowsB = kept ?? gatherRows();
        kept = undefined;
        try {
          return tf.tidy(() => {
            const z = activationForward(as, options.activation);
            // s[t, r] = v_e . dy[t]  (dy/dw)
            const s = tf.sum(tf.mul(rowsB.v, tf.reshape(dy2, [tokens, 1, dim])), 2);
            const dg = tf.mul(z, s);
            // da = g s sigma'(a)
            const da = tf.mul(tf.mul(gs, s), activationDerivative(as, options.activation));
            // dx[t] = sum_r da[t, r] u_e
            const dx = tf.reshape(tf.matMul(tf.reshape(da, [tokens, 1, perToken]), rowsB.u), [tokens, dim]);
            // Row gradients: dU_e += da[t, r] x[t], dV_e += w[t, r] dy[t].
            const du = tf.mul(tf.reshape(da, [tokens, perToken, 1]), tf.reshape(xs, [tokens, 1, dim]));
            tables.downGrad.accumulate(indices, du.dataSync() as Float32Array);
            du.dispose();
            const wB = tf.mul(gs, z);
            const dv = tf.mul(tf.reshape(wB, [tokens, perToken, 1]), tf.reshape(dy2, [tokens, 1, dim]));
            tables.upGrad.accumulate(indices, dv.dataSync() as Float32Array);
            dv.dispose();
            return [dx, dg];
          });
        } finally {
          rowsB.u.dispose();
          rowsB.v.dispose();
        }
      },
    };
  });
  try {
    return mixture(x, g) as tf.Tensor2D;
  } finally {
    // Outside a gradient tape the backward pass never runs: release rows kept for it.
    if (kept && !tapeActive()) {
      kept.u.dispose();
      kept.v.dispose();
      kept = undefined;
    }
  }
}

/** Whether a gradient tape is recording (inside tf.grad / tf.variableGrads). */
function tapeActive(): boolean {
  const state = (tf.engine() as unknown as { state: { gradientDepth: number } }).state;
  return state.gradientDepth > 0;
}
