// The memory-bounded path: 65,536 tokens x 8 heads at N = 1024^2, where the sub-key scores
// [T, h, n] alone would be 2 GiB of float32.
// Axes: T tokens, h heads, n = sqrt(N) sub-keys per half, dk key width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { heapStats } from '@peer/backend';
import { testRng } from '@peer/test-utils';
import { expect, it } from 'vitest';
import { ProductKeys } from './product-keys.js';
import { retrieve } from './retrieve.js';

const T = 65536;
const h = 8;
const sqrtN = 1024;
// A small dk keeps the test fast; memory of the selection does not depend on dk.
const dk = 16;
const k = 16;

it('retrieves and differentiates 65,536 tokens x 8 heads at N = 1024^2 within a bounded heap', () => {
  const rng = testRng();
  const keys = new ProductKeys({ numKeys: sqrtN * sqrtN, heads: h, dimKey: dk, seed: rng.int(1e9) });
  const qData = Float32Array.from(rng.normals(T * h * 2 * dk));
  const queries = tf.tensor3d(qData, [T, h, 2 * dk]);
  const w = tf.tensor3d(Float32Array.from(rng.normals(T * h * k)), [T, h, k]);

  const { indices, scores } = retrieve(queries, keys, { k });
  expect(indices.shape).toEqual([T, h, k]);
  const idx = indices.dataSync();
  const sc = scores.dataSync();

  // Sampled rows against a float64 brute force over all 1,048,576 full keys.
  const c1 = keys.subKeys1.dataSync();
  const c2 = keys.subKeys2.dataSync();
  for (let sample = 0; sample < 6; sample++) {
    const t = rng.int(T);
    const head = rng.int(h);
    const q = qData.subarray((t * h + head) * 2 * dk, (t * h + head + 1) * 2 * dk);
    const half1 = new Float64Array(sqrtN);
    const half2 = new Float64Array(sqrtN);
    for (let i = 0; i < sqrtN; i++) {
      for (let d = 0; d < dk; d++) {
        half1[i]! += q[d]! * c1[(head * sqrtN + i) * dk + d]!;
        half2[i]! += q[dk + d]! * c2[(head * sqrtN + i) * dk + d]!;
      }
    }
    const best: { n: number; s: number }[] = [];
    for (let n = 0; n < sqrtN * sqrtN; n++) {
      const s = half1[Math.floor(n / sqrtN)]! + half2[n % sqrtN]!;
      if (best.length < k || s > best[k - 1]!.s) {
        best.push({ n, s });
        best.sort((x, y) => y.s - x.s);
        if (best.length > k) best.pop();
      }
    }
    const row = (t * h + head) * k;
    const label = `seed ${rng.seed} t=${t} head=${head}`;
    for (let j = 0; j < k; j++) {
      const n = idx[row + j]!;
      // Experts tied within float32 rounding may come out in either order.
      if (n !== best[j]!.n) expect(Math.abs(half1[Math.floor(n / sqrtN)]! + half2[n % sqrtN]! - best[j]!.s), label).toBeLessThan(1e-5);
      expect(Math.abs(sc[row + j]! - best[j]!.s), label).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(best[j]!.s)));
    }
  }
  tf.dispose([indices, scores]);

  // Backward at the same size; spot-check d/dq of sum(w * scores) = sum_j w_j [C1[a_j] ; C2[b_j]].
  const [dq, dc1] = tf.grads((q: tf.Tensor, k1: tf.Tensor, k2: tf.Tensor) =>
    tf.sum(tf.mul(retrieve(q, { subKeys1: k1, subKeys2: k2 }, { k }).scores, w)),
  )([queries, keys.subKeys1, keys.subKeys2]);
  expect(dq!.shape).toEqual([T, h, 2 * dk]);
  expect(dc1!.shape).toEqual([h, sqrtN, dk]);
  const dqData = dq!.dataSync();
  const wData = w.dataSync();
  for (let sample = 0; sample < 4; sample++) {
    const t = rng.int(T);
    const head = rng.int(h);
    const row = (t * h + head) * k;
    for (let d = 0; d < dk; d++) {
      let expected1 = 0;
      let expected2 = 0;
      for (let j = 0; j < k; j++) {
        const n = idx[row + j]!;
        expected1 += wData[row + j]! * c1[(head * sqrtN + Math.floor(n / sqrtN)) * dk + d]!;
        expected2 += wData[row + j]! * c2[(head * sqrtN + (n % sqrtN)) * dk + d]!;
      }
      const base = (t * h + head) * 2 * dk;
      expect(Math.abs(dqData[base + d]! - expected1)).toBeLessThan(1e-5);
      expect(Math.abs(dqData[base + dk + d]! - expected2)).toBeLessThan(1e-5);
    }
  }
  tf.dispose([dq!, dc1!]);

  const heap = heapStats();
  if (heap) {
    // The wasm heap never shrinks, so its size is the peak of this whole test. Unchunked, the
    // sub-key scores alone would take 2 GiB.
    expect(heap.heapBytes).toBeLessThan(1024 ** 3);
  }
  tf.dispose([queries, w]);
  keys.dispose();
});
