// The expert / FFW hidden nonlinearity sigma and its derivative, in two forms:
//   - tensor ops (`activate`, `activationWithCache`, `activationDerivative`): tfjs's float32 erf and
//     sigmoid, for the dense FFW and the MoE experts. The forward pass keeps a cache (Phi(x) for gelu,
//     the sigmoid for gelu-tanh) so that the backward pass evaluates no second transcendental.
//   - array loops (`activateArray`, `activationDerivativeArray`): float64 arithmetic over a
//     Float32Array (the [T, R] activations of PEER's expert mixture), where tfjs's element-wise ops
//     with erf are much slower on wasm than a JS loop (backend README, "Activations").
// The two forms round differently (tfjs's float32 erf against a float64 erfc) and each stays as its
// callers trained with.
//
// gelu: x * Phi(x), Phi the standard normal CDF; gelu-tanh: the tanh approximation
// 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); relu: max(x, 0).
// Axes: T tokens, R rows per token (array form); the tensor form is element-wise on any shape.
import * as tf from '@tensorflow/tfjs-core';

export const ACTIVATIONS = ['gelu', 'gelu-tanh', 'relu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const TANH_SCALE = Math.sqrt(2 / Math.PI);
// 0.5 * (1 + tanh(u)) = sigmoid(2u), and sigmoid is faster than tanh on wasm.
const TWICE_TANH_SCALE = 2 * TANH_SCALE;
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

// One customGrad per transcendental kind: autodiff of the composite formulas would record 5-8
// element-wise ops per direction on the widest tensor of the block.
const withCachedGradient = (activation: Activation) =>
  tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const { value, cache } = activationWithCache(input, activation);
    save([input, cache]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, activationDerivative(saved[0]!, saved[1]!, activation))],
    };
  });
const geluOp = withCachedGradient('gelu');
const geluTanhOp = withCachedGradient('gelu-tanh');

/** act(x), differentiable (gelu kinds through the derivative above; relu through tfjs's own gradient). */
export function activate<T extends tf.Tensor>(x: T, activation: Activation): T {
  switch (activation) {
    case 'gelu':
      return geluOp(x) as T;
    case 'gelu-tanh':
      return geluTanhOp(x) as T;
    case 'relu':
      return tf.relu(x);
  }
}

/**
 * erfc(x) with fractional error below 1.2e-7 everywhere (the Chebyshev fit of Numerical Recipes,
 * "erfcc"); float64 arithmetic. erfc keeps its relative precision in the negative tail, where
 * 1 + erf cancels.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** out[i] = sigma(a[i]), float64 arithmetic rounded once to float32. */
export function activateArray(a: Float32Array, activation: Activation, out: Float32Array): void {
  const n = a.length;
  switch (activation) {
    case 'relu':
      for (let i = 0; i < n; i++) out[i] = a[i]! > 0 ? a[i]! : 0;
      return;
    case 'gelu':
      for (let i = 0; i < n; i++) out[i] = 0.5 * a[i]! * erfc(-a[i]! * Math.SQRT1_2);
      return;
    case 'gelu-tanh':
      for (let i = 0; i < n; i++) {
        const v = a[i]!;
        out[i] = 0.5 * v * (1 + Math.tanh(TANH_SCALE * (v + TANH_CUBIC * v * v * v)));
      }
      return;
  }
}

/** out[i] = sigma'(a[i]) (relu: 1 for a > 0, else 0, tfjs's subgradient). */
export function activationDerivativeArray(a: Float32Array, activation: Activation, out: Float32Array): void {
  const n = a.length;
  switch (activation) {
    case 'relu':
      for (let i = 0; i < n; i++) out[i] = a[i]! > 0 ? 1 : 0;
      return;
    case 'gelu':
      // Phi(a) + a phi(a)
      for (let i = 0; i < n; i++) {
        const v = a[i]!;
        out[i] = 0.5 * erfc(-v * Math.SQRT1_2) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v);
      }
      return;
    case 'gelu-tanh':
      // 0.5 (1 + t) + 0.5 a (1 - t^2) d(inner)/da
      for (let i = 0; i < n; i++) {
        const v = a[i]!;
        const t = Math.tanh(TANH_SCALE * (v + TANH_CUBIC * v * v * v));
        out[i] = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * TANH_SCALE * (1 + 3 * TANH_CUBIC * v * v);
      }
      return;
  }
}
