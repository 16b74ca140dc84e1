// Central finite differences in float64 against analytic gradients. The function under test gets
// float32 tensors (tfjs computes in float32), so steps are chosen large enough that float32 rounding
// does not dominate: use smooth, well-scaled test problems and compare with a relative tolerance.
// A step that large leaves a truncation error of order eps^2 * f''' (curved paths such as a
// BatchNorm over a few tokens reach the tolerance), so the estimate is Richardson-extrapolated from
// the steps eps and eps / 2, which cancels the eps^2 term (unless `richardson: false`).
import * as tf from '@tensorflow/tfjs-core';

export interface GradCheckOptions {
  /** Finite-difference step. Default 1e-2 (float32 evaluation). */
  eps?: number;
  /** Relative tolerance against max(|fd|, floor). Default 2e-2. */
  rtol?: number;
  /** Absolute tolerance. Default 1e-3. */
  atol?: number;
  /** Check at most this many coordinates per input, chosen evenly. Default 64. */
  maxCoords?: number;
  /**
   * Richardson-extrapolate from the steps eps and eps / 2 (default true). It cancels the eps^2
   * truncation error but triples float32 rounding noise: turn it off for small steps (eps near 1e-3,
   * as around ReLU kinks) where the noise, not the truncation, dominates.
   */
  richardson?: boolean;
  label?: string;
}

export interface GradCheckResult {
  /** For each input: the analytic gradient entries checked, the numeric ones, their indices. */
  inputs: { indices: number[]; analytic: number[]; numeric: number[] }[];
  maxRelError: number;
}

/**
 * Checks `tf.grads(f)` against central differences of the scalar `f` at `xs`. `f` must return a
 * scalar and be deterministic. Throws with the worst coordinate on failure.
 */
export function checkGradients(
  f: (...xs: tf.Tensor[]) => tf.Scalar,
  xs: tf.Tensor[],
  options: GradCheckOptions = {},
): GradCheckResult {
  const { eps = 1e-2, rtol = 2e-2, atol = 1e-3, maxCoords = 64, richardson = true, label = '' } = options;
  const analytic = tf.tidy(() => tf.grads(f)(xs).map((g) => Array.from(g.dataSync())));
  const base = xs.map((x) => Float64Array.from(x.dataSync()));
  const evalAt = (which: number, index: number, delta: number): number =>
    tf.tidy(() => {
      const args = xs.map((x, i) => {
        if (i !== which) return x;
        const v = Float32Array.from(base[i]!);
        v[index] = base[i]![index]! + delta;
        return tf.tensor(v, x.shape, x.dtype);
      });
      return f(...args).dataSync()[0]!;
    });
  const result: GradCheckResult = { inputs: [], maxRelError: 0 };
  xs.forEach((x, which) => {
    const n = x.size;
    const count = Math.min(n, maxCoords);
    const indices = Array.from({ length: count }, (_, j) => Math.floor((j * n) / count));
    const central = (idx: number, h: number) => (evalAt(which, idx, h) - evalAt(which, idx, -h)) / (2 * h);
    const numeric = indices.map((idx) => (richardson ? (4 * central(idx, eps / 2) - central(idx, eps)) / 3 : central(idx, eps)));
    const an = indices.map((idx) => analytic[which]![idx]!);
    indices.forEach((idx, j) => {
      const diff = Math.abs(an[j]! - numeric[j]!);
      const rel = diff / Math.max(Math.abs(numeric[j]!), 1e-6);
      if (diff > atol) result.maxRelError = Math.max(result.maxRelError, rel);
      if (diff > atol && rel > rtol) {
        throw new Error(
          `${label} gradient mismatch for input ${which} at [${idx}]: analytic ${an[j]}, finite differences ${numeric[j]} ` +
            `(rel error ${rel.toExponential(3)} > ${rtol}, abs ${diff.toExponential(3)} > ${atol})`,
        );
      }
    });
    result.inputs.push({ indices, analytic: an, numeric });
  });
  return result;
}
