import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectClose, testRng } from '@peer/test-utils';
import { QueryNorm } from './query-norm.js';

describe('QueryNorm (batch)', () => {
  it('normalizes with batch statistics and moves running stats PyTorch-style (unbiased variance, momentum)', () => {
    const rng = testRng();
    const [t, f, m] = [7, 5, 0.3];
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

  it('refuses a single token in training (no batch variance)', () => {
    const norm = new QueryNorm({ kind: 'batch', features: 3, momentum: 0.1, eps: 1e-5, name: 'qn_single' });
    const q = tf.ones([1, 3]) as tf.Tensor2D;
    expect(() => norm.apply(q, true)).toThrow('needs more than one token per batch, got 1');
    q.dispose();
    norm.dispose();
  });
});
