import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { checkGradients, expectClose, testRng } from '@peer/test-utils';
import { ACTIVATIONS, activate, activationDerivative, activationForward, activationWithCache } from './activation.js';
import { referenceActivation } from './moe-reference.test-util.js';

describe('activations', () => {
  for (const activation of ACTIVATIONS) {
    it(`${activation}: forward equals the float64 formula and the derivative matches finite differences`, () => {
      const rng = testRng();
      // Keep ReLU inputs away from its kink at 0.
      const xs = Array.from(rng.normals(200, 2), (v) => (activation === 'relu' && Math.abs(v) < 0.05 ? v + 0.1 : v));
      tf.tidy(() => {
        const x = tf.tensor1d(xs);
        expectClose(activationForward(x, activation), xs.map((v) => referenceActivation(v, activation)), { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
        expectClose(activate(x, activation), xs.map((v) => referenceActivation(v, activation)), { rtol: 1e-5, atol: 1e-6 });
        const h = 1e-4;
        const numeric = xs.map((v) => (referenceActivation(v + h, activation) - referenceActivation(v - h, activation)) / (2 * h));
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
