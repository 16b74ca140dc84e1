// Element-wise activations of the expert / FFW hidden layer, with their derivatives written out so
// that hand-written backward passes (tf.customGrad) can use them. The forward pass keeps a cache
// (Phi(x) for gelu, the sigmoid for gelu-tanh) so that the backward pass evaluates no second erf/tanh.
//
// gelu: x * Phi(x) with the exact erf; gelu-tanh: the tanh approximation
// 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); relu: max(x, 0).
import * as tf from '@tensorflow/tfjs-core';

export const ACTIVATIONS = ['gelu', 'gelu-tanh', 'relu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TWICE_TANH_SCALE = 2 * Math.sqrt(2 / Math.PI);
const TANH_CUBIC = 0.044715;

export interface ActivationResult {
  /** act(pre) */
  value: tf.Tensor;
  /** What `activationDerivative` needs besides `pre` (Phi(pre), the sigmoid, or pre itself for relu). */
  cache: tf.Tensor;
}

/** act(pre) and its cache, same shape. */
export function activationWithCache(pre: tf.Tensor, activation: Activation): ActivationResult {
  switch (activation) {
    case 'relu':
      return { value: tf.relu(pre), cache: pre };
    case 'gelu': {
      const cdf = tf.add(tf.mul(tf.erf(tf.mul(pre, Math.SQRT1_2)), 0.5), 0.5);
      return { value: tf.mul(pre, cdf), cache: cdf };
    }
    case 'gelu-tanh': {
      const s = tf.sigmoid(tf.mul(pre, tf.add(tf.mul(tf.square(pre), TWICE_TANH_SCALE * TANH_CUBIC), TWICE_TANH_SCALE)));
      return { value: tf.mul(pre, s), cache: s };
    }
  }
}

/** d act / d pre at `pre`, from the forward pass's cache. */
export function activationDerivative(pre: tf.Tensor, cache: tf.Tensor, activation: Activation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'relu':
        // 1 for x > 0, 0 otherwise (the subgradient 0 at 0, as tfjs's relu gradient).
        return tf.step(pre);
      case 'gelu':
        // Phi(x) + x phi(x)
        return tf.add(cache, tf.mul(pre, tf.mul(tf.exp(tf.mul(tf.square(pre), -0.5)), INV_SQRT_2PI)));
      case 'gelu-tanh': {
        // x * s(z(x)): s + x s (1 - s) z'(x), z' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        const dz = tf.add(tf.mul(tf.square(pre), 3 * TWICE_TANH_SCALE * TANH_CUBIC), TWICE_TANH_SCALE);
        return tf.add(cache, tf.mul(tf.mul(cache, tf.sub(1, cache)), tf.mul(pre, dz)));
      }
    }
  });
}

/** act(pre), same shape. */
export function activationForward(pre: tf.Tensor, activation: Activation): tf.Tensor {
  return tf.tidy(() => activationWithCache(pre, activation).value);
}

/** act(x) with the derivative above as its gradient (fewer tape nodes than autodiff through erf). */
export function activate<T extends tf.Tensor>(x: T, activation: Activation): T {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const { value, cache } = activationWithCache(input, activation);
    save([input, cache]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, activationDerivative(saved[0]!, saved[1]!, activation))],
    };
  });
  return f(x) as T;
}
