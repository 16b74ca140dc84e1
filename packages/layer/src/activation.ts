// The expert nonlinearity sigma and its derivative, written out for the hand-written backward pass
// of the expert mixture. Element-wise on any shape.
//
// gelu: a * Phi(a) with the exact erf; gelu-tanh: the tanh approximation; relu: max(a, 0).
import * as tf from '@tensorflow/tfjs-core';
import type { ExpertActivation } from './config.js';

const SQRT_HALF = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TANH_SCALE = Math.sqrt(2 / Math.PI);
const TANH_CUBIC = 0.044715;

/** sigma(a). */
export function activationForward(a: tf.Tensor, activation: ExpertActivation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'relu':
        return tf.relu(a);
      case 'gelu':
        // 0.5 a (1 + erf(a / sqrt 2))
        return tf.mul(tf.mul(a, 0.5), tf.add(tf.erf(tf.mul(a, SQRT_HALF)), 1));
      case 'gelu-tanh': {
        const inner = tf.mul(tf.mul(a, tf.add(tf.mul(tf.square(a), TANH_CUBIC), 1)), TANH_SCALE);
        return tf.mul(tf.mul(a, 0.5), tf.add(tf.tanh(inner), 1));
      }
    }
  });
}

/** sigma'(a). */
export function activationDerivative(a: tf.Tensor, activation: ExpertActivation): tf.Tensor {
  return tf.tidy(() => {
    switch (activation) {
      case 'relu':
        // 1 for a > 0, else 0 (tfjs's relu subgradient at 0).
        return tf.step(a);
      case 'gelu': {
        // Phi(a) + a phi(a)
        const cdf = tf.mul(tf.add(tf.erf(tf.mul(a, SQRT_HALF)), 1), 0.5);
        const pdf = tf.mul(tf.exp(tf.mul(tf.square(a), -0.5)), INV_SQRT_2PI);
        return tf.add(cdf, tf.mul(a, pdf));
      }
      case 'gelu-tanh': {
        const sq = tf.square(a);
        const t = tf.tanh(tf.mul(tf.mul(a, tf.add(tf.mul(sq, TANH_CUBIC), 1)), TANH_SCALE));
        const dInner = tf.mul(tf.add(tf.mul(sq, 3 * TANH_CUBIC), 1), TANH_SCALE);
        // 0.5 (1 + t) + 0.5 a (1 - t^2) dInner
        return tf.add(tf.mul(tf.add(t, 1), 0.5), tf.mul(tf.mul(tf.mul(a, 0.5), tf.sub(1, tf.square(t))), dInner));
      }
    }
  });
}
