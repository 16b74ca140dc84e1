// Gradients of retrieve's scores w.r.t. queries and sub-keys: finite differences, and a float64
// reference of the formula on larger inputs.
// Axes: T tokens, h heads, n = sqrt(N) sub-keys per half, dk key width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { checkGradients, expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ProductKeys } from './product-keys.js';
import { retrieve, type RetrieveOptions } from './retrieve.js';
import { disableScoreGradKernel, scoreGradKernelFits } from './score-grad-kernel.js';
import { smallestTopGap } from './top-k-reference.test-util.js';

interface Inputs {
  T: number;
  h: number;
  sqrtN: number;
  dk: number;
  sets: number;
  q: Float32Array;
  c1: Float32Array;
  c2: Float32Array;
}

function randomInputs(rng: TestRng, T: number, h: number, sqrtN: number, dk: number, shared: boolean, bound = 1 / Math.sqrt(dk)): Inputs {
  const sets = shared ? 1 : h;
  return {
    T,
    h,
    sqrtN,
    dk,
    sets,
    q: Float32Array.from(rng.normals(T * h * 2 * dk)),
    c1: Float32Array.from(rng.uniforms(sets * sqrtN * dk, -bound, bound)),
    c2: Float32Array.from(rng.uniforms(sets * sqrtN * dk, -bound, bound)),
  };
}

/**
 * Random inputs whose top-k ranking cannot change under a finite-difference step `eps` on any one
 * coordinate: such a step moves any score by at most eps * m (m = the largest |coordinate|), so two
 * scores by at most 2 * eps * m relative to each other. Keys span [-1, 1] to spread the scores.
 */
function separatedInputs(rng: TestRng, T: number, h: number, sqrtN: number, dk: number, shared: boolean, k: number, eps: number): Inputs {
  const largest = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const x = randomInputs(rng, T, h, sqrtN, dk, shared, 1);
    const m = Math.max(largest(x.q), largest(x.c1), largest(x.c2));
    if (smallestTopGap(x, k) > 3 * eps * m) return x;
  }
  throw new Error(`no well-separated inputs found (seed ${rng.seed})`);
}

function asTensors(x: Inputs): [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D] {
  return [
    tf.tensor3d(x.q, [x.T, x.h, 2 * x.dk]),
    tf.tensor3d(x.c1, [x.sets, x.sqrtN, x.dk]),
    tf.tensor3d(x.c2, [x.sets, x.sqrtN, x.dk]),
  ];
}

/** A router-like loss: the scores and their softmax over each head's k, weighted by fixed random numbers. */
function routerLoss(weights: tf.Tensor, options: RetrieveOptions) {
  return (q: tf.Tensor, c1: tf.Tensor, c2: tf.Tensor): tf.Scalar => {
    const { indices, scores } = retrieve(q, { subKeys1: c1, subKeys2: c2 }, options);
    indices.dispose();
    // The linear term keeps k = 1 meaningful (a softmax over one score is constant).
    return tf.add(tf.sum(tf.mul(tf.softmax(scores), weights)), tf.sum(tf.mul(scores, tf.reverse(weights, 2))));
  };
}

describe('gradients by finite differences', () => {
  const eps = 1e-2;
  const cases = [
    { shared: false, k: 2, candidateK: undefined },
    { shared: true, k: 2, candidateK: undefined },
    { shared: false, k: 1, candidateK: 3 },
    { shared: true, k: 4, candidateK: 4 },
  ];
  for (const c of cases) {
    it(`queries and sub-keys, ${c.shared ? 'shared' : 'per-head'} keys, k=${c.k}, candidateK=${c.candidateK ?? c.k}`, () => {
      const rng = testRng();
      const [T, h] = [c.k > 2 ? 2 : 3, 2];
      const x = separatedInputs(rng, T, h, 4, 3, c.shared, c.k, eps);
      const xs = asTensors(x);
      const weights = tf.tensor3d(Float32Array.from(rng.normals(T * h * c.k)), [T, h, c.k]);
      // The loss sums many float32 terms, so over 2 eps its central difference carries a few 1e-4 of
      // rounding noise (seeds 7 and 4242 reached 2.5e-4 and 3.5e-4): atol sits above that floor, and
      // the plain central difference is kept (extrapolation would triple the noise; the step is
      // bounded by the separation of the top-k scores, so there is little truncation to remove).
      const result = checkGradients(routerLoss(weights, { k: c.k, candidateK: c.candidateK }), xs, {
        eps,
        rtol: 1e-2,
        atol: 5e-4,
        richardson: false,
        label: `seed ${rng.seed}`,
      });
      // The sub-key gradients are sparse; make sure the check saw some non-zero entries.
      for (const input of result.inputs) expect(input.numeric.some((v) => Math.abs(v) > 1e-3)).toBe(true);
      tf.dispose([...xs, weights]);
    });
  }
});

/** d(sum(w * scores)) by the formula, in float64, from the returned indices. */
function referenceGradients(x: Inputs, indices: Int32Array, w: Float64Array, k: number) {
  const dq = new Float64Array(x.q.length);
  const dc1 = new Float64Array(x.c1.length);
  const dc2 = new Float64Array(x.c2.length);
  for (let t = 0; t < x.T; t++) {
    for (let head = 0; head < x.h; head++) {
      const set = x.sets === 1 ? 0 : head;
      const qBase = (t * x.h + head) * 2 * x.dk;
      for (let j = 0; j < k; j++) {
        const r = (t * x.h + head) * k + j;
        const a = Math.floor(indices[r]! / x.sqrtN);
        const b = indices[r]! % x.sqrtN;
        for (let d = 0; d < x.dk; d++) {
          dq[qBase + d]! += w[r]! * x.c1[(set * x.sqrtN + a) * x.dk + d]!;
          dq[qBase + x.dk + d]! += w[r]! * x.c2[(set * x.sqrtN + b) * x.dk + d]!;
          dc1[(set * x.sqrtN + a) * x.dk + d]! += w[r]! * x.q[qBase + d]!;
          dc2[(set * x.sqrtN + b) * x.dk + d]! += w[r]! * x.q[qBase + x.dk + d]!;
        }
      }
    }
  }
  return [dq, dc1, dc2];
}

describe('gradients against the float64 formula', () => {
  it('runs the backward in the SIMD kernel on this host (dk a multiple of 8)', () => {
    expect(scoreGradKernelFits(16)).toBe(true);
    expect(scoreGradKernelFits(12)).toBe(false);
  });
  for (const [shared, path] of [
    [false, 'SIMD kernel'],
    [true, 'SIMD kernel'],
    [false, 'tfjs ops'],
    [true, 'tfjs ops'],
  ] as const) {
    it(`${shared ? 'shared' : 'per-head'} keys, repeated sub-keys accumulate, chunked backward agrees (${path})`, () => {
      disableScoreGradKernel(path === 'tfjs ops');
      onTestFinished(() => disableScoreGradKernel(false));
      const rng = testRng();
      // Few sub-keys and many tokens, so that many (t, h, j) select the same sub-key rows.
      const x = randomInputs(rng, 40, 3, 8, 16, shared);
      const k = 6;
      const xs = asTensors(x);
      const w = rng.normals(40 * 3 * k);
      const wT = tf.tensor3d(Float32Array.from(w), [40, 3, k]);
      const { indices, scores } = retrieve(xs[0], { subKeys1: xs[1], subKeys2: xs[2] }, { k });
      const expected = referenceGradients(x, indices.dataSync() as Int32Array, w, k);
      for (const chunkSize of [undefined, 7, 1]) {
        // Leave non-zero garbage in freed engine memory: rows no token selected must still get 0.
        tf.dispose(tf.randomUniform([1 << 18], 1, 2));
        const grads = tf.grads((q: tf.Tensor, c1: tf.Tensor, c2: tf.Tensor) => {
          const r = retrieve(q, { subKeys1: c1, subKeys2: c2 }, { k, chunkSize });
          return tf.sum(tf.mul(r.scores, wT));
        })(xs);
        grads.forEach((g, i) => {
          expect(g.shape).toEqual(xs[i]!.shape);
          expectClose(g, expected[i]!, { rtol: 1e-5, atol: 1e-5, label: `seed ${rng.seed} input ${i} chunkSize ${chunkSize}` });
        });
        tf.dispose(grads);
      }
      tf.dispose([...xs, wT, indices, scores]);
    });
  }

  it('reaches ProductKeys variables through tf.variableGrads', () => {
    const rng = testRng();
    const pk = new ProductKeys({ numKeys: 100, heads: 2, dimKey: 5, seed: rng.int(1e9) });
    const q = tf.tensor3d(Float32Array.from(rng.normals(8 * 2 * 10)), [8, 2, 10]);
    const w = tf.tensor3d(Float32Array.from(rng.normals(8 * 2 * 3)), [8, 2, 3]);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(retrieve(q, pk, { k: 3 }).scores, w)));
    const direct = tf.grads((c1: tf.Tensor, c2: tf.Tensor) => tf.sum(tf.mul(retrieve(q, { subKeys1: c1, subKeys2: c2 }, { k: 3 }).scores, w)))([
      pk.subKeys1,
      pk.subKeys2,
    ]);
    expectClose(grads[pk.subKeys1.name]!, direct[0]!, { rtol: 1e-6 });
    expectClose(grads[pk.subKeys2.name]!, direct[1]!, { rtol: 1e-6 });
    expect(tf.max(tf.abs(grads[pk.subKeys1.name]!)).dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([q, w, value, ...Object.values(grads), ...direct]);
    pk.dispose();
  });
});

describe('indices are cut from the tape', () => {
  it('can index a differentiated table inside the same tf.grad (the PEER/PKM use)', () => {
    const rng = testRng();
    const x = randomInputs(rng, 5, 2, 4, 3, false);
    const xs = asTensors(x);
    const k = 3;
    const values = tf.tensor2d(Float32Array.from(rng.normals(16 * 2)), [16, 2]);
    // y = sum over (t, h, j) of scores * values[index] . [1, 1]
    const [dq, dValues] = tf.grads((q: tf.Tensor, v: tf.Tensor) => {
      const r = retrieve(q, { subKeys1: xs[1], subKeys2: xs[2] }, { k });
      const rows = tf.reshape(tf.gather(v, tf.reshape(r.indices, [-1])), [5, 2, k, 2]);
      return tf.sum(tf.mul(tf.sum(rows, 3), r.scores));
    })([xs[0], values]);
    const r = retrieve(xs[0], { subKeys1: xs[1], subKeys2: xs[2] }, { k });
    const idx = r.indices.dataSync();
    const sc = r.scores.dataSync();
    const expected = new Float64Array(32);
    idx.forEach((n, i) => {
      expected[n * 2]! += sc[i]!;
      expected[n * 2 + 1]! += sc[i]!;
    });
    expectClose(dValues!, expected, { rtol: 1e-5, label: `seed ${rng.seed}` });
    expect(dq!.shape).toEqual([5, 2, 6]);
    tf.dispose([...xs, values, dq!, dValues!, r.indices, r.scores]);
  });
});

describe('memory', () => {
  it('leaks no tensors through forward and backward', async () => {
    const rng = testRng();
    const xs = asTensors(randomInputs(rng, 9, 2, 6, 4, false));
    const w = tf.tensor3d(Float32Array.from(rng.normals(9 * 2 * 3)), [9, 2, 3]);
    for (const chunkSize of [undefined, 2]) {
      await expectNoLeaks(() => {
        const grads = tf.grads((q: tf.Tensor, c1: tf.Tensor, c2: tf.Tensor) => {
          const r = retrieve(q, { subKeys1: c1, subKeys2: c2 }, { k: 3, chunkSize });
          return tf.sum(tf.mul(r.scores, w));
        })(xs);
        tf.dispose(grads);
      });
    }
    tf.dispose([...xs, w]);
  });
});
