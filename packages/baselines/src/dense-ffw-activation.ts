// Element-wise activations of the dense FFW with hand-written gradients: autodiff of the composite
// GELU formulas records 5-8 element-wise ops per direction on the widest tensor of the block, and
// erf / tanh are slow on wasm (about 20 ns per element), so each direction here evaluates the
// transcendental once and reuses what the forward pass saved.
// Shapes are arbitrary; all ops are element-wise.
import * as tf from '@tensorflow/tfjs-core';
import type { DenseFfwActivation } from './dense-ffw-config.js';

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
// 0.5 * (1 + tanh(u)) = sigmoid(2u), and sigmoid is about 5x faster than tanh on wasm.
const TANH_SCALE = 2 * Math.sqrt(2 / Math.PI);
const TANH_CUBIC = 0.044715;

/** Exact GELU, x * Phi(x) with Phi the standard normal CDF; d/dx = Phi(x) + x * phi(x). */
const geluErf = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  const save = args[1] as tf.GradSaveFunc;
  const cdf = tf.add(tf.mul(tf.erf(tf.mul(x, Math.SQRT1_2)), 0.5), 0.5);
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, c] = saved as [tf.Tensor, tf.Tensor];
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(xs), -0.5)), INV_SQRT_2PI);
      return [tf.mul(dy, tf.add(c, tf.mul(xs, pdf)))];
    },
  };
});

/**
 * Tanh-approximated GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * s with
 * s = sigmoid(z), z = 2 sqrt(2/pi) (x + 0.044715 x^3); d/dx = s + x s (1 - s) dz/dx.
 */
const geluTanh = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  const save = args[1] as tf.GradSaveFunc;
  const x2 = tf.square(x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, TANH_SCALE * TANH_CUBIC), TANH_SCALE)));
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ss] = saved as [tf.Tensor, tf.Tensor];
      const dz = tf.add(tf.mul(tf.square(xs), 3 * TANH_SCALE * TANH_CUBIC), TANH_SCALE);
      const ds = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(xs, dz));
      return [tf.mul(dy, tf.add(ss, ds))];
    },
  };
});

/** Applies the named activation (differentiable). */
export function activate<T extends tf.Tensor>(x: T, activation: DenseFfwActivation): T {
  switch (activation) {
    case 'gelu':
      return geluErf(x) as T;
    case 'gelu-tanh':
      return geluTanh(x) as T;
    case 'relu':
      return tf.relu(x);
  }
}
