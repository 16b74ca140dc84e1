// The expert mixture of a PEER layer for tables on a device (webgpu): the same function and
// backward as expert-mixture.ts, with the [T, R] math (sigma, sigma', products with g) as tfjs ops
// and the expert rows named by an int32 index tensor that never leaves the device.
//   y[t] = sum_{r < R} g[t, r] * sigma(u_{e(t,r)} . x[t]) * v_{e(t,r)}
//
// Axes: T tokens, R = h*k retrieved experts per token, D model width.
//
// The index tensor is saved for the backward pass (customGrad keeps saved tensors alive until the
// backward has run) and the tables' selections are made again from it there, so no selection has
// to outlive the tidy scope of the forward call. The tensors handed to accumulateRowGradients are
// not disposed here: a device gradient may keep them until its sparse step; the backward pass's
// scope frees them unless it does.
import * as tf from '@tensorflow/tfjs-core';
import { activationDerivative, activationWithCache } from '@peer/backend';
import type { MixtureOptions, MixtureTables } from './expert-mixture.js';

/**
 * y [T, D] from x [T, D], router weights g [T, R] and the expert rows `indices` (int32, T*R
 * elements, row-major [T, R]). Differentiable in x and g; backward accumulates the u and v row
 * gradients into `tables.downGrad` / `tables.upGrad`. Reads nothing back to the host.
 */
export function deviceExpertMixture(x: tf.Tensor2D, g: tf.Tensor2D, indices: tf.Tensor, tables: MixtureTables, options: MixtureOptions): tf.Tensor2D {
  const [tokens, dim] = x.shape;
  const perToken = g.shape[1];
  if (g.shape[0] !== tokens) throw new Error(`expertMixture: g has ${g.shape[0]} tokens, x has ${tokens}`);
  if (indices.dtype !== 'int32') throw new Error(`expertMixture: expert rows must be an int32 tensor, got ${indices.dtype}`);
  if (indices.size !== tokens * perToken) {
    throw new Error(`expertMixture: ${indices.size} expert rows for ${tokens} tokens x ${perToken} experts`);
  }
  if (tables.down.dim !== dim || tables.up.dim !== dim) {
    throw new Error(`expertMixture: tables of width ${tables.down.dim} / ${tables.up.dim} for x of width ${dim}`);
  }
  const { activation } = options;
  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x2, g2, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    // a = einsum('btd,bthkd->bthk', x, w_down); w = activation(a) * g; y = einsum('bthk,bthkd->btd', w, w_up)
    const a = tables.down.rowDots(tables.down.select(indices, perToken), x2);
    const { value: z, cache } = activationWithCache(a, activation);
    const w = tf.mul(g2, z) as tf.Tensor2D;
    const y = tables.up.weightedRowSum(tables.up.select(indices, perToken), w);
    save([x2, g2, a, z, cache, indices]);
    tf.dispose([a, z, cache, w]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gs, as, zs, cs, is] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor];
        const dy2 = dy as tf.Tensor2D;
        const downRows = tables.down.select(is, perToken);
        const upRows = tables.up.select(is, perToken);
        // s[t, r] = v_e . dy[t]  (= dy / dw);  dg = sigma(a) s;  da = g s sigma'(a)
        const s = tables.up.rowDots(upRows, dy2);
        const dg = tf.mul(zs, s) as tf.Tensor2D;
        const da = tf.mul(tf.mul(gs, s), activationDerivative(as, cs, activation)) as tf.Tensor2D;
        // dx[t] = sum_r da[t, r] u_e
        const dx = tables.down.weightedRowSum(downRows, da);
        // dU_e = sum_{(t,r) -> e} da[t, r] x[t],   dV_e = sum_{(t,r) -> e} g sigma(a) [t, r] dy[t]
        tables.down.accumulateRowGradients(downRows, da, xs, tables.downGrad);
        tables.up.accumulateRowGradients(upRows, tf.mul(gs, zs) as tf.Tensor2D, dy2, tables.upGrad);
        return [dx, dg];
      },
    };
  });
  return mixture(x, g) as tf.Tensor2D;
}
