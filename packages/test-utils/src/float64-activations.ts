// Float64 references of the hidden-layer activations for tests of their float32 implementations.

/** erf in float64: erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1)); all terms positive. */
export function erf64(x: number): number {
  if (x < 0) return -erf64(-x);
  if (x > 6) return 1;
  let term = x;
  let sum = x;
  for (let n = 1; n < 400; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

/** gelu (exact erf), gelu-tanh or relu of `a`, in float64. */
export function activation64(a: number, kind: 'gelu' | 'gelu-tanh' | 'relu'): number {
  if (kind === 'relu') return a > 0 ? a : 0;
  if (kind === 'gelu') return 0.5 * a * (1 + erf64(a / Math.SQRT2));
  return 0.5 * a * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (a + 0.044715 * a * a * a)));
}
