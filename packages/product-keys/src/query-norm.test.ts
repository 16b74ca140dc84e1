// Axes: t tokens, f query features.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { disableHeapQueryNorm, QueryNorm } from './query-norm.js';
import { batchNormInference, batchNormTraining, updateRunningStats } from './query-norm-ops.js';

describe('QueryNorm (batch)', () => {
  for (const f of [5, 16]) it(`normalizes with batch statistics and moves running stats PyTorch-style (unbiased variance, momentum), ${f} features`, () => {
    const rng = testRng();
    const [t, m] = [7, 0.3];
    const norm = new QueryNorm({ kind: 'batch', features: f, momentum: m, eps: 1e-5, name: `qn_${rng.seed}_a` });
    const gamma = rng.uniforms(f, 0.5, 1.5);
    const beta = rng.normals(f);
    tf.tidy(() => {
      norm.weight!.assign(tf.tensor1d(Float32Array.from(gamma)));
      norm.bias!.assign(tf.tensor1d(Float32Array.from(beta)));
    });
    const q64 = rng.normals(t * f, 2);
    const q = tf.tensor2d(Float32Array.from(q64), [t, f]);
    const expectedY = new Float64Array(t * f);
    const expectedMean = new Float64Array(f);
    const expectedVar = new Float64Array(f);
    for (let j = 0; j < f; j++) {
      let mean = 0;
      for (let i = 0; i < t; i++) mean += q64[i * f + j]! / t;
      let ss = 0;
      for (let i = 0; i < t; i++) ss += (q64[i * f + j]! - mean) ** 2;
      for (let i = 0; i < t; i++) expectedY[i * f + j] = ((q64[i * f + j]! - mean) / Math.sqrt(ss / t + 1e-5)) * gamma[j]! + beta[j]!;
      expectedMean[j] = m * mean; // from running mean 0
      expectedVar[j] = (1 - m) * 1 + (m * ss) / (t - 1); // from running var 1
    }
    const y = norm.apply(q, true);
    expectClose(y.dataSync(), expectedY, { rtol: 1e-4, atol: 1e-5, label: `y seed ${rng.seed}` });
    expectClose(norm.runningMean!.dataSync(), expectedMean, { rtol: 1e-4, atol: 1e-6, label: 'running mean' });
    expectClose(norm.runningVar!.dataSync(), expectedVar, { rtol: 1e-4, atol: 1e-6, label: 'running var' });
    // Evaluation uses the running statistics and leaves them alone.
    const yEval = norm.apply(q, false);
    const expectedEval = q64.map((v, i) => ((v - expectedMean[i % f]!) / Math.sqrt(expectedVar[i % f]! + 1e-5)) * gamma[i % f]! + beta[i % f]!);
    expectClose(yEval.dataSync(), expectedEval, { rtol: 1e-4, atol: 1e-5, label: 'eval' });
    expectClose(norm.runningMean!.dataSync(), expectedMean, { rtol: 1e-4, atol: 1e-6, label: 'running mean unchanged' });
    // Batch statistics without moving the running ones.
    norm.apply(q, true, false);
    expectClose(norm.runningMean!.dataSync(), expectedMean, { rtol: 1e-4, atol: 1e-6, label: 'running mean frozen' });
    tf.dispose([q, y, yEval]);
    norm.dispose();
  });

  for (const f of [6, 16]) it(`backward equals finite differences of a float64 BatchNorm, ${f} features`, () => {
    const rng = testRng();
    const t = 9;
    const norm = new QueryNorm({ kind: 'batch', features: f, momentum: 0.1, eps: 1e-5, name: `qn_${rng.seed}_g${f}` });
    const gamma = rng.uniforms(f, 0.5, 1.5);
    const beta = rng.normals(f);
    tf.tidy(() => {
      norm.weight!.assign(tf.tensor1d(Float32Array.from(gamma)));
      norm.bias!.assign(tf.tensor1d(Float32Array.from(beta)));
    });
    const q64 = rng.normals(t * f, 2);
    const r64 = rng.normals(t * f);
    const loss64 = (q: Float64Array, g: Float64Array, b: Float64Array): number => {
      let l = 0;
      for (let j = 0; j < f; j++) {
        let mean = 0;
        for (let i = 0; i < t; i++) mean += q[i * f + j]! / t;
        let v = 0;
        for (let i = 0; i < t; i++) v += (q[i * f + j]! - mean) ** 2 / t;
        for (let i = 0; i < t; i++) l += (((q[i * f + j]! - mean) / Math.sqrt(v + 1e-5)) * g[j]! + b[j]!) * r64[i * f + j]!;
      }
      return l;
    };
    const q = tf.tensor2d(Float32Array.from(q64), [t, f]);
    const r = tf.tensor2d(Float32Array.from(r64), [t, f]);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(norm.apply(q, true, false), r)) as tf.Scalar, [norm.weight!, norm.bias!]);
    const dq = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(norm.apply(x as tf.Tensor2D, true, false), r)))(q);
    const inputs = [q64, gamma, beta];
    const analytic = [dq.dataSync(), grads[norm.weight!.name]!.dataSync(), grads[norm.bias!.name]!.dataSync()];
    inputs.forEach((base, which) => {
      for (let index = 0; index < base.length; index++) {
        const at = (delta: number) => {
          const args = inputs.map((v) => Float64Array.from(v));
          args[which]![index]! += delta;
          return loss64(args[0]!, args[1]!, args[2]!);
        };
        const numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
        expect(Math.abs(analytic[which]![index]! - numeric)).toBeLessThanOrEqual(1e-3 * Math.abs(numeric) + 2e-4);
      }
    });
    tf.dispose([q, r, dq, ...Object.values(grads)]);
    norm.dispose();
  });

  it('refuses a single token in training (no batch variance)', () => {
    const norm = new QueryNorm({ kind: 'batch', features: 3, momentum: 0.1, eps: 1e-5, name: 'qn_single' });
    const q = tf.ones([1, 3]) as tf.Tensor2D;
    expect(() => norm.apply(q, true)).toThrow('needs more than one token per batch, got 1');
    q.dispose();
    norm.dispose();
  });

  it("'matmul' reductions (PKM's) run the tensor-op functions bit for bit and agree with the kernel path", () => {
    const rng = testRng();
    const [t, f, m] = [6, 8, 0.2];
    const q = tf.tensor2d(Float32Array.from(rng.normals(t * f, 2)), [t, f]);
    const viaClass = new QueryNorm({ kind: 'batch', features: f, momentum: m, eps: 1e-5, reductions: 'matmul' });
    const viaKernels = new QueryNorm({ kind: 'batch', features: f, momentum: m, eps: 1e-5 });
    const [gamma, beta, mean, variance] = [f, f, f, f].map(() => tf.variable(tf.tensor1d(Float32Array.from([1, 1, 1, 1, 1, 1, 1, 1])), false));
    tf.tidy(() => {
      beta!.assign(tf.zeros([f]));
      mean!.assign(tf.zeros([f]));
    });
    const y = viaClass.apply(q, true);
    const direct = batchNormTraining(q, gamma!, beta!, 1e-5);
    updateRunningStats(mean!, variance!, direct, t, m);
    expect(y.dataSync()).toEqual(direct.y.dataSync());
    expect(viaClass.runningMean!.dataSync()).toEqual(mean!.dataSync());
    expect(viaClass.runningVar!.dataSync()).toEqual(variance!.dataSync());
    const yKernels = viaKernels.apply(q, true);
    expectClose(y.dataSync(), yKernels.dataSync(), { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
    expectClose(viaClass.runningVar!.dataSync(), viaKernels.runningVar!.dataSync(), { rtol: 1e-5, atol: 1e-6 });
    const yEval = viaClass.apply(q, false);
    const directEval = batchNormInference(q, gamma!, beta!, mean!, variance!, 1e-5);
    expect(yEval.dataSync()).toEqual(directEval.dataSync());
    const single = tf.ones([1, f]) as tf.Tensor2D;
    expect(() => viaClass.apply(single, true)).toThrow('query BatchNorm in training needs at least 2 tokens per batch, got 1');
    tf.dispose([single, q, y, yKernels, yEval, directEval, direct.y, direct.mean, direct.variance, gamma!, beta!, mean!, variance!]);
    viaClass.dispose();
    viaKernels.dispose();
  });

  for (const [t, f] of [[9, 16], [300, 1024]] as const) it(`on the wasm engine's heap gives the copy path's bits (y, running stats, all gradients) and leaks no tensor, T ${t} F ${f}`, () => {
    const rng = testRng();
    const q = tf.tensor2d(Float32Array.from(rng.normals(t * f, 2)), [t, f]);
    const r = tf.tensor2d(Float32Array.from(rng.normals(t * f)), [t, f]);
    const gamma = Float32Array.from(rng.uniforms(f, 0.5, 1.5));
    const beta = Float32Array.from(rng.normals(f));
    const run = (heap: boolean) => {
      disableHeapQueryNorm(!heap);
      const norm = new QueryNorm({ kind: 'batch', features: f, momentum: 0.1, eps: 1e-5 });
      try {
        tf.tidy(() => {
          norm.weight!.assign(tf.tensor1d(gamma));
          norm.bias!.assign(tf.tensor1d(beta));
        });
        const before = tf.memory().numTensors;
        const y = tf.tidy(() => norm.apply(q, true).dataSync());
        // A forward under no tape keeps nothing for a backward that never comes.
        expect(tf.memory().numTensors).toBe(before);
        const loss = (x: tf.Tensor) => tf.sum(tf.mul(norm.apply(x as tf.Tensor2D, true, false), r)) as tf.Scalar;
        const { value, grads } = tf.variableGrads(() => loss(q), [norm.weight!, norm.bias!]);
        const dq = tf.grad(loss)(q);
        const out = [y, norm.runningMean!.dataSync(), norm.runningVar!.dataSync(), dq.dataSync(), grads[norm.weight!.name]!.dataSync(), grads[norm.bias!.name]!.dataSync()];
        tf.dispose([value, dq, ...Object.values(grads)]);
        expect(tf.memory().numTensors).toBe(before);
        return out;
      } finally {
        disableHeapQueryNorm(false);
        norm.dispose();
      }
    };
    const copies = run(false);
    const onHeap = run(true);
    onHeap.forEach((values, i) => expect(bitsOf(values), `output ${i} seed ${rng.seed}`).toEqual(bitsOf(copies[i]!)));
    tf.dispose([q, r]);
  });
});

const bitsOf = (values: ArrayLike<number>): Uint32Array => new Uint32Array(Float32Array.from(values).buffer);
