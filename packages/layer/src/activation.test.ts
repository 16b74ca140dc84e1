import { describe, expect, it } from 'vitest';
import { activate, activationDerivative, erfc } from './activation.js';
import { activation64, erf64 } from './peer-reference.test-util.js';
import { EXPERT_ACTIVATIONS } from './config.js';

describe('expert activations', () => {
  it('erfc has fractional error below 1.2e-7 against the float64 series', () => {
    for (let x = -5.9; x <= 5.9; x += 0.01) {
      // 1 - erf64(x) is exact to a few 1e-16 absolute (it cancels for large x): allow that too.
      const exact = 1 - erf64(x);
      expect(Math.abs(erfc(x) - exact)).toBeLessThanOrEqual(1.2e-7 * exact + 4e-15);
    }
  });

  for (const kind of EXPERT_ACTIVATIONS) {
    it(`${kind}: values and derivatives match float64 references`, () => {
      const a = Float32Array.from({ length: 801 }, (_, i) => -8 + i * 0.02 + 0.001);
      const out = new Float32Array(a.length);
      const deriv = new Float32Array(a.length);
      activate(a, kind, out);
      activationDerivative(a, kind, deriv);
      const h = 1e-6;
      a.forEach((v, i) => {
        const exact = activation64(v, kind);
        expect(Math.abs(out[i]! - exact)).toBeLessThanOrEqual(1e-7 * Math.max(1, Math.abs(exact)));
        const numeric = (activation64(v + h, kind) - activation64(v - h, kind)) / (2 * h);
        expect(Math.abs(deriv[i]! - numeric)).toBeLessThanOrEqual(1e-6);
      });
    });
  }
});
