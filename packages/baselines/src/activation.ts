// Element-wise activations of the expert / FFW hidden layer, with their derivatives written out so
// that hand-written backward passes (tf.customGrad) can use them.
//
// gelu: x * Phi(x) with the exact erf; gelu-tanh: the tanh approximation; relu: max(x, 0).
import * as tf from '@tensorflow/tfjs-core';

export const ACTIVATIONS = ['gelu', 'gelu-tanh', 'relu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

const SQRT_HALF = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TANH_SCALE = Math.sqrt(2 / Math.PI);
const TANH_CUBIC = 0.044715;

/** act(pre), same shape. */
export function activationForward(pre: tf.Tensor, activation: Activation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'relu':
        return tf.relu(pre);
      case 'gelu':
        // 0.5 x (1 + erf(x / sqrt 2))
        return tf.mul(tf.mul(pre, 0.5), tf.add(tf.erf(tf.mul(pre, SQRT_HALF)), 1));
      case 'gelu-tanh': {
        const inner = tf.mul(tf.add(pre, tf.mul(tf.pow(pre, 3), TANH_CUBIC)), TANH_SCALE);
        return tf.mul(tf.mul(pre, 0.5), tf.add(tf.tanh(inner), 1));
      }
    }
  });
}

/** d act / d pre evaluated at `pre`, same shape. */
export function activationDerivative(pre: tf.Tensor, activation: Activation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'relu':
        // tf.step(x) is 1 for x > 0 and 0 otherwise (the subgradient 0 at 0, as tfjs's relu gradient).
        return tf.step(pre);
      case 'gelu': {
        // Phi(x) + x phi(x)
        const cdf = tf.mul(tf.add(tf.erf(tf.mul(pre, SQRT_HALF)), 1), 0.5);
        const pdf = tf.mul(tf.exp(tf.mul(tf.square(pre), -0.5)), INV_SQRT_2PI);
        return tf.add(cdf, tf.mul(pre, pdf));
      }
      case 'gelu-tanh': {
        const sq = tf.square(pre);
        const inner = tf.mul(tf.mul(pre, tf.add(tf.mul(sq, TANH_CUBIC), 1)), TANH_SCALE);
        const t = tf.tanh(inner);
        const dInner = tf.mul(tf.add(tf.mul(sq, 3 * TANH_CUBIC), 1), TANH_SCALE);
        // 0.5 (1 + t) + 0.5 x (1 - t^2) dInner
        const left = tf.mul(tf.add(t, 1), 0.5);
        const right = tf.mul(tf.mul(tf.mul(pre, 0.5), tf.sub(1, tf.square(t))), dInner);
        return tf.add(left, right);
      }
    }
  });
}

/** act(x) with the derivative above as its gradient (fewer tape nodes than autodiff through erf). */
export function activate<T extends tf.Tensor>(x: T, activation: Activation): T {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    save([input]);
    return {
      value: activationForward(input, activation),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, activationDerivative(saved[0]!, activation))],
    };
  });
  return f(x) as T;
}
