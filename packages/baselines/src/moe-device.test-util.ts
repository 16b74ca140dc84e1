// Shared by the MoE device-routing tests: one training step of a MoE layer read back
// asynchronously (works on every engine), and a scale-relative error.
// Axes: B batch, S sequence, T = B*S tokens, D model width.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';
import type { MoeExpertChoice } from './moe-expert-choice.js';
import type { MoeTokenChoice } from './moe-token-choice.js';

export type MoeLayer = MoeTokenChoice | MoeExpertChoice;

/** max |a - b| / max |b|. */
export function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-30);
}

/** A copy of the layer's state (its weights), for a twin layer on another engine. */
export function copyState(layer: MoeLayer): Map<string, NamedArray> {
  return new Map(layer.stateEntries('').map((e) => [e.name, { ...e, data: Float32Array.from(e.data as Float32Array) }]));
}

export type MoeForward = (x: tf.Tensor2D) => { y: tf.Tensor2D; auxLoss?: tf.Scalar };

/**
 * y, the aux loss, dx and each trainable variable's gradient of sum(y * r) + auxLoss, for the
 * forward `forward` (by default the layer's own `apply`, which picks the engine's path).
 */
export async function moeTrainStep(layer: MoeLayer, x: Float32Array, r: Float32Array, shape: [number, number, number], forward?: MoeForward): Promise<Float32Array[]> {
  const [B, S, D] = shape;
  const run: MoeForward =
    forward ??
    ((x2) => {
      const out = layer.apply(tf.reshape(x2, shape) as tf.Tensor3D, { training: true });
      return { y: tf.reshape(out.y, [B * S, D]) as tf.Tensor2D, ...(out.auxLoss ? { auxLoss: out.auxLoss } : {}) };
    });
  const outs = tf.tidy(() => {
    const xt = tf.tensor2d(x, [B * S, D]);
    const rt = tf.tensor2d(r, [B * S, D]);
    const loss = (input: tf.Tensor) => {
      const { y, auxLoss } = run(input as tf.Tensor2D);
      const fit = tf.sum(tf.mul(y, rt));
      return (auxLoss ? tf.add(fit, auxLoss) : fit) as tf.Scalar;
    };
    const { y, auxLoss } = run(xt);
    const dx = tf.grad(loss)(xt);
    const vars = layer.trainableVariables();
    const { grads } = tf.variableGrads(() => loss(xt), vars);
    return [y, auxLoss ?? tf.scalar(0), dx, ...vars.map((v) => grads[v.name]!)];
  });
  const values = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
  tf.dispose(outs);
  return values;
}
