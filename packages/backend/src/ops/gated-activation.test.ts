// Axes: T tokens, R retrieved experts per token.
import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { ACTIVATIONS, activateArray, activationDerivativeArray } from './activation.js';
import { gatedActivation, gatedActivationGrad, POOLED_GATED_ACTIVATION_MIN_SIZE, useHostGatedActivation } from './gated-activation.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', threads: 2, log: false });
  expect(kernelPool()?.threads).toBe(2);
});
afterEach(() => useHostGatedActivation(false));
afterAll(async () => {
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

/** Bit patterns, every NaN made the canonical one (WebAssembly leaves a NaN's payload open). */
const bits = (x: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(x, (u) => (Number.isNaN(u) ? NaN : u)).buffer));

describe('gatedActivation and gatedActivationGrad', () => {
  for (const activation of ACTIVATIONS) {
    it(`${activation}: the heap kernels (one call and split over the pool) and the host loops give the JS loops' bits`, () => {
      const rng = testRng();
      // One size under the pool's threshold, one split over both threads.
      for (const tokens of [1 + rng.int(40), (2 * POOLED_GATED_ACTIVATION_MIN_SIZE) / 16 + rng.int(300)]) {
        const perToken = 16;
        const n = tokens * perToken;
        const a = Float32Array.from({ length: n }, () => (rng.int(20) === 0 ? rng.uniform(-50, 50) : 2 * rng.normal()));
        a.set([0, -0, NaN, Infinity, -Infinity].slice(0, n));
        const g = Float32Array.from({ length: n }, () => rng.float());
        const s = Float32Array.from({ length: n }, () => rng.normal());
        const z = new Float32Array(n);
        activateArray(a, activation, z);
        const d = new Float32Array(n);
        activationDerivativeArray(a, activation, d);
        const expected = {
          z: bits(z),
          w: bits(z.map((v, i) => g[i]! * v)),
          da: bits(d.map((v, i) => g[i]! * s[i]! * v)),
          dg: bits(z.map((v, i) => v * s[i]!)),
        };
        for (const host of [false, true]) {
          useHostGatedActivation(host);
          const [aT, gT, sT] = [a, g, s].map((v) => tf.tensor2d(v, [tokens, perToken]));
          const before = tf.memory().numTensors;
          const forward = gatedActivation(aT!, gT!, activation);
          const backward = gatedActivationGrad(aT!, gT!, forward.z, sT!, activation);
          const got = { z: bits(forward.z.dataSync()), w: bits(forward.w.dataSync()), da: bits(backward.da.dataSync()), dg: bits(backward.dg.dataSync()) };
          tf.dispose([forward.z, forward.w, backward.da, backward.dg]);
          expect(tf.memory().numTensors).toBe(before);
          tf.dispose([aT!, gT!, sT!]);
          expect(got, `${host ? 'host' : 'heap'} route, ${n} elements`).toEqual(expected);
        }
      }
    });
  }

  it('refuses operands of different shapes or dtypes, naming them', () => {
    const a = tf.zeros([4, 8]) as tf.Tensor2D;
    const g = tf.zeros([4, 7]) as tf.Tensor2D;
    const i = tf.zeros([4, 8], 'int32') as tf.Tensor2D;
    const flat = tf.zeros([32]) as unknown as tf.Tensor2D;
    expect(() => gatedActivation(a, g, 'gelu')).toThrow('gatedActivation: g has shape [4,7], a has [4,8]');
    expect(() => gatedActivationGrad(a, a, a, i, 'gelu')).toThrow('gatedActivationGrad: s must be float32, got int32');
    expect(() => gatedActivation(flat, a, 'relu')).toThrow('gatedActivation: a must be [T, R], got shape [32]');
    tf.dispose([a, g, i, flat]);
  });
});
