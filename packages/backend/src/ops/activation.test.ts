// Axes: element-wise on any shape.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { activation64, checkGradients, erf64, expectClose, testRng } from '@peer/test-utils';
import { initBackend } from '../init-backend.js';
import { ACTIVATIONS, activate, activateArray, activationDerivative, activationDerivativeArray, activationForward, activationWithCache, erfc } from './activation.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});

describe('activations as tensor ops', () => {
  for (const activation of ACTIVATIONS) {
    it(`${activation}: forward equals the float64 formula and the derivative matches finite differences`, () => {
      const rng = testRng();
      // Keep ReLU inputs away from its kink at 0.
      const xs = Array.from(rng.normals(200, 2), (v) => (activation === 'relu' && Math.abs(v) < 0.05 ? v + 0.1 : v));
      tf.tidy(() => {
        const x = tf.tensor1d(xs);
        expectClose(activationForward(x, activation), xs.map((v) => activation64(v, activation)), { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
        expectClose(activate(x, activation), xs.map((v) => activation64(v, activation)), { rtol: 1e-5, atol: 1e-6 });
        const h = 1e-4;
        const numeric = xs.map((v) => (activation64(v + h, activation) - activation64(v - h, activation)) / (2 * h));
        expectClose(activationDerivative(x, activationWithCache(x, activation).cache, activation), numeric, { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
        // The customGrad wiring, on few elements so that float32 rounding of the sum stays far below the step.
        const few = tf.slice(x, 0, 20);
        const coefficients = tf.tensor1d(Float32Array.from(rng.normals(20)));
        checkGradients((t) => tf.sum(tf.mul(activate(t, activation), coefficients)), [few], { eps: 1e-2, maxCoords: 20, label: `seed ${rng.seed}` });
      });
    });
  }

  it('has the known values of GELU', () => {
    expect(activationForward(tf.scalar(1), 'gelu').dataSync()[0]).toBeCloseTo(0.8413447, 6);
    expect(activationForward(tf.scalar(-1), 'gelu').dataSync()[0]).toBeCloseTo(-0.1586553, 6);
  });
});

describe('activations over arrays', () => {
  it('erfc has fractional error below 1.2e-7 against the float64 series', () => {
    for (let x = -5.9; x <= 5.9; x += 0.01) {
      // 1 - erf64(x) is exact to a few 1e-16 absolute (it cancels for large x): allow that too.
      const exact = 1 - erf64(x);
      expect(Math.abs(erfc(x) - exact)).toBeLessThanOrEqual(1.2e-7 * exact + 4e-15);
    }
  });

  for (const kind of ACTIVATIONS) {
    it(`${kind}: values and derivatives match float64 references`, () => {
      const a = Float32Array.from({ length: 801 }, (_, i) => -8 + i * 0.02 + 0.001);
      const out = new Float32Array(a.length);
      const deriv = new Float32Array(a.length);
      activateArray(a, kind, out);
      activationDerivativeArray(a, kind, deriv);
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
