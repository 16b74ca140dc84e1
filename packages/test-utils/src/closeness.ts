import type * as tf from '@tensorflow/tfjs-core';

type Numbers = ArrayLike<number> | tf.Tensor;

function values(x: Numbers): ArrayLike<number> {
  return 'dataSync' in x ? (x as tf.Tensor).dataSync() : x;
}

export interface Closeness {
  maxAbsError: number;
  /** max |a - b| / max(|b|, floor) */
  maxRelError: number;
  worstIndex: number;
}

/** Element-wise distance of `actual` from `expected`. */
export function closeness(actual: Numbers, expected: Numbers, floor = 1e-6): Closeness {
  const a = values(actual);
  const b = values(expected);
  if (a.length !== b.length) throw new Error(`length mismatch: actual ${a.length}, expected ${b.length}`);
  let maxAbsError = 0;
  let maxRelError = 0;
  let worstIndex = -1;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(diff)) return { maxAbsError: NaN, maxRelError: NaN, worstIndex: i };
    const rel = diff / Math.max(Math.abs(b[i]!), floor);
    if (diff > maxAbsError) maxAbsError = diff;
    if (rel > maxRelError) {
      maxRelError = rel;
      worstIndex = i;
    }
  }
  return { maxAbsError, maxRelError, worstIndex };
}

export interface CloseOptions {
  /** Relative tolerance, against max(|expected|, floor). Default 1e-4. */
  rtol?: number;
  /** Absolute tolerance; an element passes if within rtol OR atol. Default 0. */
  atol?: number;
  /** Denominator floor for relative errors. Default 1e-6. */
  floor?: number;
  /** Context for the failure message (e.g. the seed). */
  label?: string;
}

/** Throws with the worst element if any element is outside tolerance; shapes are compared when both are tensors. */
export function expectClose(actual: Numbers, expected: Numbers, options: CloseOptions = {}): void {
  const { rtol = 1e-4, atol = 0, floor = 1e-6, label = '' } = options;
  if ('shape' in actual && 'shape' in expected) {
    const sa = JSON.stringify((actual as tf.Tensor).shape);
    const sb = JSON.stringify((expected as tf.Tensor).shape);
    if (sa !== sb) throw new Error(`${label} shape mismatch: actual ${sa}, expected ${sb}`);
  }
  const a = values(actual);
  const b = values(expected);
  if (a.length !== b.length) throw new Error(`${label} length mismatch: actual ${a.length}, expected ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i]! - b[i]!);
    const ok = diff <= atol || diff <= rtol * Math.max(Math.abs(b[i]!), floor);
    if (!ok) {
      const c = closeness(a, b, floor);
      throw new Error(
        `${label} not close at [${i}]: actual ${a[i]}, expected ${b[i]} ` +
          `(rtol ${rtol}, atol ${atol}; max rel error ${c.maxRelError.toExponential(3)} at [${c.worstIndex}], max abs error ${c.maxAbsError.toExponential(3)})`,
      );
    }
  }
}
