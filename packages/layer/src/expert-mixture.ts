// The expert mixture of a PEER layer, one tf.customGrad with a hand-written backward pass:
//   y[t] = sum_{r < R} g[t, r] * sigma(u_{e(t,r)} . x[t]) * v_{e(t,r)}
// where e(t, r) is the r-th retrieved expert of token t (R = h * k, all heads of the token).
//
// Axes: T tokens, R = h*k retrieved experts per token, D model width.
//
// Inputs of the customGrad are x [T, D] and the router weights g [T, R]; the u and v rows are not
// tfjs variables: the products over them are the expert tables' gather-mixture primitives
// (ExpertTable.rowDots / weightedRowSum / accumulateRowGradients / rowDotsAndGradients), which a
// host table runs in its own memory (expert-store README). The u-side math runs in the down table,
// the v-side in the up table. The small [T, R] parts (sigma, sigma', products with g) are
// @peer/backend's gatedActivation and its gradient: float64 per element, in a kernel on the wasm
// heap split over the kernel pool (tfjs's float32 erf ops on wasm are slow at this size).
// Backward returns dx and dg to autodiff and hands the row gradients dU, dV (summed per distinct
// expert) to the tables' row-gradient accumulators as a side effect: no dense [N, D] gradient, no
// autodiff through gathers.
import * as tf from '@tensorflow/tfjs-core';
import { gatedActivation, gatedActivationGrad } from '@peer/backend';
import type { ExpertTable, RowGradientSink } from '@peer/expert-store';
import type { ExpertActivation } from './config.js';

export type { RowGradientSink } from '@peer/expert-store';

export interface MixtureTables {
  /** u rows (the "down" table). */
  down: ExpertTable;
  /** v rows (the "up" table). */
  up: ExpertTable;
  downGrad: RowGradientSink;
  upGrad: RowGradientSink;
}

export interface MixtureOptions {
  activation: ExpertActivation;
}

/**
 * y [T, D] from x [T, D], router weights g [T, R] and the expert rows `indices` (T*R, row-major
 * [T, R]). Differentiable in x and g; backward accumulates the u and v row gradients into
 * `tables.downGrad` / `tables.upGrad`.
 */
export function expertMixture(x: tf.Tensor2D, g: tf.Tensor2D, indices: Int32Array, tables: MixtureTables, options: MixtureOptions): tf.Tensor2D {
  const [tokens, dim] = x.shape;
  const perToken = g.shape[1];
  if (g.shape[0] !== tokens) throw new Error(`expertMixture: g has ${g.shape[0]} tokens, x has ${tokens}`);
  if (indices.length !== tokens * perToken) {
    throw new Error(`expertMixture: ${indices.length} expert rows for ${tokens} tokens x ${perToken} experts`);
  }
  if (tables.down.dim !== dim || tables.up.dim !== dim) {
    throw new Error(`expertMixture: tables of width ${tables.down.dim} / ${tables.up.dim} for x of width ${dim}`);
  }
  // w_down = w_down_embed(indices); w_up = w_up_embed(indices): read in place by the tables.
  const downRows = tables.down.select(indices, perToken);
  const upRows = tables.up.select(indices, perToken);

  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x2, g2, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    // a = einsum('btd,bthkd->bthk', x, w_down)
    const a = tables.down.rowDots(downRows, x2);
    // w = activation(a) * g   (g: softmax(scores) of each head, dropout folded in)
    const { z, w } = gatedActivation(a, g2, options.activation);
    // y = einsum('bthk,bthkd->btd', w, w_up)
    const y = tables.up.weightedRowSum(upRows, w);
    // The backward pass needs only these [T, R] tensors and x.
    save([x2, g2, a, z, w]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xSaved, gSaved, aSaved, zSaved, wSaved] = saved as tf.Tensor2D[];
        const dy2 = dy as tf.Tensor2D;
        // s[t, r] = v_e . dy[t]  (= dy / dw), and the up rows' gradients per distinct expert e
        // (ascending e), in one pass over the rows: dV_e = sum_{(t,r) -> e} w[t, r] dy[t]
        const s = tables.up.rowDotsAndGradients(upRows, dy2, wSaved!, tables.upGrad);
        // dg = sigma(a) s;  da = g s sigma'(a)
        const { da, dg } = gatedActivationGrad(aSaved!, gSaved!, zSaved!, s, options.activation);
        s.dispose();
        // dx[t] = sum_r da[t, r] u_e
        const dx = tables.down.weightedRowSum(downRows, da);
        // dU_e = sum_{(t,r) -> e} da[t, r] x[t]
        tables.down.accumulateRowGradients(downRows, da, xSaved!, tables.downGrad);
        da.dispose();
        return [dx, dg];
      },
    };
  });
  return mixture(x, g) as tf.Tensor2D;
}
