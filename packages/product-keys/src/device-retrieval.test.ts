// Retrieval and the query BatchNorm on the webgpu engine (SwiftShader in CI) against the cpu engine:
// the same indices, scores and gradients, with no synchronous read anywhere (dataSync throws on
// webgpu in Node, so any left on the path fails these tests). Tiny sizes: software Vulkan is slow.
// Axes: T tokens, h heads, H' key sets, n = sqrt(N) sub-keys per half, dk key width, k results,
// F = h * 2 * dk query features.
import { webgpuSkipReason } from '@peer/backend';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onEngine, scaledError, startWebgpu } from './engine-compare.test-util.js';
import { ProductKeys } from './product-keys.js';
import { QueryNorm } from './query-norm.js';
import { retrieve } from './retrieve.js';
import { smallestTopGap } from './top-k-reference.test-util.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu retrieval tests skipped: ${skip}`);
const rng = testRng();
const TOL = 1e-4;

/**
 * Queries [T, h, 2dk] and sub-keys [sets, n, dk] in [-1, 1] whose top-k the two engines' rounding
 * cannot reorder: consecutive float64 scores among the best k + 1 of every (t, head) differ by more
 * than 1e-4 Q, Q the largest sum_d |q_d| of a query (a bound on |score|), while a float32 score of
 * 2 dk terms is within 2 dk u Q of exact (u = 2^-24) on either engine.
 */
function separatedInputs(T: number, h: number, sets: number, sqrtN: number, dk: number, k: number) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const x = {
      T,
      h,
      sqrtN,
      dk,
      sets,
      q: Float32Array.from(rng.normals(T * h * 2 * dk)),
      c1: Float32Array.from(rng.uniforms(sets * sqrtN * dk, -1, 1)),
      c2: Float32Array.from(rng.uniforms(sets * sqrtN * dk, -1, 1)),
    };
    let largest = 0;
    for (let row = 0; row < T * h; row++) largest = Math.max(largest, x.q.subarray(row * 2 * dk, (row + 1) * 2 * dk).reduce((s, v) => s + Math.abs(v), 0));
    if (smallestTopGap(x, k) > 1e-4 * largest) return x;
  }
  throw new Error(`no well-separated retrieval inputs found (seed ${rng.seed})`);
}

describe.skipIf(skip !== undefined)(`retrieval on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hostEngine = '';
  beforeAll(async () => {
    hostEngine = tf.getBackend();
    await startWebgpu();
  });
  afterAll(async () => {
    await tf.setBackend(hostEngine);
  });

  it.each([
    { label: 'per-head keys', T: 6, h: 2, shared: false, sqrtN: 8, dk: 4, k: 3 },
    { label: 'shared keys, chunked', T: 5, h: 3, shared: true, sqrtN: 6, dk: 4, k: 4, chunkSize: 2 },
  ])('retrieve gives the cpu engine\'s indices, scores and gradients: $label', async ({ T, h, shared, sqrtN, dk, k, chunkSize }) => {
    const sets = shared ? 1 : h;
    const { q, c1, c2 } = separatedInputs(T, h, sets, sqrtN, dk, k);
    const dScores = Float32Array.from(rng.normals(T * h * k));
    const run = () => {
      const queries = tf.tensor3d(q, [T, h, 2 * dk]);
      const keys = { subKeys1: tf.tensor3d(c1, [sets, sqrtN, dk]), subKeys2: tf.tensor3d(c2, [sets, sqrtN, dk]) };
      const found = retrieve(queries, keys, { k, chunkSize });
      // Gradients of sum(scores * dScores): the backward of the gathered scores.
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const again = retrieve(a as tf.Tensor3D, { subKeys1: b, subKeys2: c }, { k, chunkSize });
        again.indices.dispose();
        return tf.sum(tf.mul(again.scores, tf.tensor3d(dScores, [T, h, k])));
      })([queries, keys.subKeys1, keys.subKeys2]);
      return [found.indices, found.scores, ...grads];
    };
    const gpu = await onEngine('webgpu', run);
    const cpu = await onEngine('cpu', run);
    await tf.setBackend('webgpu');
    expect(gpu[0]!.constructor).toBe(Int32Array);
    expect(Array.from(gpu[0]!), `indices (seed ${rng.seed})`).toEqual(Array.from(cpu[0]!));
    for (const [i, name] of ['scores', 'd queries', 'd subKeys1', 'd subKeys2'].entries()) {
      expect(scaledError(gpu[i + 1]!, cpu[i + 1]!), `${name} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL);
    }
  });

  it('QueryNorm batch training on webgpu: outputs, gradients and running statistics as on cpu', async () => {
    const T = 6;
    const F = 8;
    const q = Float32Array.from(rng.normals(T * F, 2));
    const dy = Float32Array.from(rng.normals(T * F));
    const run = () => {
      const norm = new QueryNorm({ kind: 'batch', features: F, momentum: 0.1, eps: 1e-5 });
      const qt = tf.tensor2d(q, [T, F]);
      const y = norm.apply(qt, true);
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(norm.apply(qt, true, false), tf.tensor2d(dy, [T, F]))), norm.trainableVariables());
      const dq = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(norm.apply(x as tf.Tensor2D, true, false), tf.tensor2d(dy, [T, F]))))(qt);
      const out = [y, dq, grads[norm.weight!.name]!, grads[norm.bias!.name]!, tf.clone(norm.runningMean!), tf.clone(norm.runningVar!), norm.apply(qt, false)];
      norm.dispose();
      return out;
    };
    const gpu = await onEngine('webgpu', run);
    const cpu = await onEngine('cpu', run);
    await tf.setBackend('webgpu');
    for (const [i, name] of ['y', 'd q', 'd gamma', 'd beta', 'running mean', 'running var', 'y (evaluation)'].entries()) {
      expect(scaledError(gpu[i]!, cpu[i]!), `${name} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL);
    }
  });

  it('a training step of ProductKeys + QueryNorm leaks no tensor on webgpu', async () => {
    const keys = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 2, seed: rng.int(1000) });
    const norm = new QueryNorm({ kind: 'batch', features: 8, momentum: 0.1, eps: 1e-5 });
    const q = tf.tensor2d(Float32Array.from(rng.normals(4 * 8)), [4, 8]);
    const step = async () => {
      const { value, grads } = tf.variableGrads(() => {
        const found = retrieve(tf.reshape(norm.apply(q, true), [4, 2, 4]), keys, { k: 2 });
        found.indices.dispose();
        return tf.sum(found.scores);
      }, [...keys.variables(), ...norm.trainableVariables()]);
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    };
    await expectNoLeaks(step, { label: 'webgpu retrieval step' });
    tf.dispose(q);
    keys.dispose();
    norm.dispose();
  });

  it('ProductKeys with shared keys load PEER-pytorch keys from values on webgpu, and say why a tensor cannot be checked', async () => {
    const keys = new ProductKeys({ numKeys: 9, heads: 2, dimKey: 2, sharedKeys: true, seed: 1 });
    const head = Float32Array.from(rng.normals(3 * 2 * 2));
    const both = new Float32Array(2 * head.length);
    both.set(head);
    both.set(head, head.length);
    keys.loadPeerPytorchKeys(both);
    const back = keys.toPeerPytorchKeys();
    expect(Array.from(await back.data())).toEqual(Array.from(both));
    back.dispose();
    const tensor = tf.tensor4d(both, [2, 3, 2, 2]);
    expect(() => keys.loadPeerPytorchKeys(tensor)).toThrow(/cannot read a tensor synchronously on the webgpu engine; pass the values as a Float32Array/);
    tensor.dispose();
    // Both values exact in float32, so the difference is exactly 0.5 whatever the random keys.
    both[1] = 0.25;
    both[head.length + 1] = 0.75;
    expect(() => keys.loadPeerPytorchKeys(both)).toThrow(/heads of keys differ \(max \|difference\| 0\.5\)/);
    keys.dispose();
  });
});
