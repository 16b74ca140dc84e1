// ProductKeys: initialization, PEER-pytorch layout, variables and disposal.
// Axes: h heads, n = sqrt(N) sub-keys per half, dk key width.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@peer/backend';
import { expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { ProductKeys } from './product-keys.js';
import { retrieve } from './retrieve.js';
import { smallestTopGap } from './top-k-reference.test-util.js';

describe('ProductKeys', () => {
  it('initializes per-head sub-keys uniformly in [-1/sqrt(dk), 1/sqrt(dk)]', () => {
    const seed = testRng().int(1e9);
    const pk = new ProductKeys({ numKeys: 128 * 128, heads: 4, dimKey: 64, seed });
    expect([pk.numKeys, pk.sqrtN, pk.heads, pk.dimKey, pk.sharedKeys]).toEqual([16384, 128, 4, 64, false]);
    const bound = 1 / 8;
    for (const table of pk.variables()) {
      expect(table.shape).toEqual([4, 128, 64]);
      expect(table.trainable).toBe(true);
      const v = table.dataSync();
      let sum = 0;
      let sumSq = 0;
      let inRange = true;
      for (const x of v) {
        sum += x;
        sumSq += x * x;
        inRange &&= x >= -bound && x <= bound;
      }
      const n = v.length;
      expect(inRange, `seed ${seed}`).toBe(true);
      // Uniform on [-b, b]: mean 0, variance b^2 / 3. n = 32768: 5 standard errors.
      expect(Math.abs(sum / n), `seed ${seed}`).toBeLessThan(5 * Math.sqrt(bound ** 2 / 3 / n));
      expect(Math.abs(sumSq / n - bound ** 2 / 3), `seed ${seed}`).toBeLessThan(5 * Math.sqrt((4 * bound ** 4) / 45 / n));
    }
    // The two tables are different draws.
    expect(tf.max(tf.abs(tf.sub(pk.subKeys1, pk.subKeys2))).dataSync()[0]).toBeGreaterThan(0);
    pk.dispose();
  });

  it('is deterministic in its seed and accepts an Rng stream', () => {
    const config = { numKeys: 16, heads: 2, dimKey: 3 };
    const a = new ProductKeys({ ...config, seed: 7 });
    const b = new ProductKeys({ ...config, seed: 7 });
    const c = new ProductKeys({ ...config, seed: 8 });
    const d = new ProductKeys({ ...config, seed: new Rng(7) });
    expect(Array.from(a.subKeys1.dataSync())).toEqual(Array.from(b.subKeys1.dataSync()));
    expect(Array.from(a.subKeys2.dataSync())).toEqual(Array.from(b.subKeys2.dataSync()));
    expect(Array.from(a.subKeys1.dataSync())).toEqual(Array.from(d.subKeys1.dataSync()));
    expect(Array.from(a.subKeys1.dataSync())).not.toEqual(Array.from(c.subKeys1.dataSync()));
    [a, b, c, d].forEach((p) => p.dispose());
  });

  it('holds one table pair when keys are shared', () => {
    const pk = new ProductKeys({ numKeys: 64, heads: 8, dimKey: 4, sharedKeys: true });
    expect(pk.subKeys1.shape).toEqual([1, 8, 4]);
    expect(pk.subKeys2.shape).toEqual([1, 8, 4]);
    pk.dispose();
  });

  it('names its variables under a prefix', () => {
    const name = `pk-${testRng().int(1e9)}`;
    const pk = new ProductKeys({ numKeys: 4, heads: 1, dimKey: 2, name });
    expect(pk.variables().map((v) => v.name)).toEqual([`${name}/subKeys1`, `${name}/subKeys2`]);
    pk.dispose();
  });

  it('disposes its variables and leaks nothing', async () => {
    const before = tf.memory().numTensors;
    const pk = new ProductKeys({ numKeys: 16, heads: 2, dimKey: 3 });
    expect(tf.memory().numTensors).toBe(before + 2);
    await expectNoLeaks(() => {
      const t = pk.toPeerPytorchKeys();
      pk.loadPeerPytorchKeys(t);
      t.dispose();
    });
    pk.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(pk.subKeys1.isDisposed).toBe(true);
  });
});

/**
 * PEER-pytorch keys [h, n, 2, dk] in [-1, 1] and queries [T, h, 2dk] whose top-k float32 rounding
 * cannot reorder: consecutive float64 scores among the best k + 1 of every (t, head) differ by more
 * than 1e-4 Q, Q the largest sum_d |q_d| (a bound on |score|), while a float32 score of 2 dk terms
 * is within 2 dk u Q of exact (u = 2^-24).
 */
function separatedPeerPytorchInputs(rng: TestRng, h: number, sqrtN: number, dk: number, T: number, k: number) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const keysData = rng.uniforms(h * sqrtN * 2 * dk, -1, 1);
    const qData = rng.normals(T * h * 2 * dk);
    const half = (which: number) => Float64Array.from({ length: h * sqrtN * dk }, (_, i) => keysData[(Math.floor(i / dk) * 2 + which) * dk + (i % dk)]!);
    const f32 = (x: Float64Array) => Float64Array.from(Float32Array.from(x));
    const gap = smallestTopGap({ T, h, sqrtN, dk, sets: h, q: f32(qData), c1: f32(half(0)), c2: f32(half(1)) }, k);
    let largest = 0;
    for (let row = 0; row < T * h; row++) largest = Math.max(largest, qData.subarray(row * 2 * dk, (row + 1) * 2 * dk).reduce((sum, v) => sum + Math.abs(v), 0));
    if (gap > 1e-4 * largest) return { keysData, qData };
  }
  throw new Error(`no well-separated retrieval inputs found (seed ${rng.seed})`);
}

describe('PEER-pytorch interop', () => {
  it('exports [h, sqrtN, 2, dk] with the first half at index 0 of axis 2', () => {
    const pk = new ProductKeys({ numKeys: 25, heads: 3, dimKey: 2, seed: testRng().int(1e9) });
    const t = pk.toPeerPytorchKeys();
    expect(t.shape).toEqual([3, 5, 2, 2]);
    const out = t.arraySync();
    const c1 = pk.subKeys1.arraySync();
    const c2 = pk.subKeys2.arraySync();
    for (let h = 0; h < 3; h++) {
      for (let i = 0; i < 5; i++) {
        expect(out[h]![i]![0]).toEqual(c1[h]![i]);
        expect(out[h]![i]![1]).toEqual(c2[h]![i]);
      }
    }
    t.dispose();
    pk.dispose();
  });

  it('repeats shared keys for every head and loads them back', () => {
    const pk = new ProductKeys({ numKeys: 9, heads: 4, dimKey: 2, sharedKeys: true, seed: 3 });
    const t = pk.toPeerPytorchKeys();
    expect(t.shape).toEqual([4, 3, 2, 2]);
    const heads = t.arraySync();
    for (let h = 1; h < 4; h++) expect(heads[h]).toEqual(heads[0]);
    const other = new ProductKeys({ numKeys: 9, heads: 4, dimKey: 2, sharedKeys: true, seed: 4 });
    other.loadPeerPytorchKeys(t);
    expect(Array.from(other.subKeys1.dataSync())).toEqual(Array.from(pk.subKeys1.dataSync()));
    expect(Array.from(other.subKeys2.dataSync())).toEqual(Array.from(pk.subKeys2.dataSync()));
    tf.dispose(t);
    pk.dispose();
    other.dispose();
  });

  it('retrieves with loaded keys as PEER-pytorch scores them: q1 . keys[h, i, 0] + q2 . keys[h, j, 1]', () => {
    const rng = testRng();
    const [h, sqrtN, dk, T, k] = [2, 6, 3, 4, 5];
    const { keysData, qData } = separatedPeerPytorchInputs(rng, h, sqrtN, dk, T, k);
    const pk = new ProductKeys({ numKeys: sqrtN * sqrtN, heads: h, dimKey: dk });
    const keys = tf.tensor4d(Float32Array.from(keysData), [h, sqrtN, 2, dk]);
    pk.loadPeerPytorchKeys(keys);
    const queries = tf.tensor3d(Float32Array.from(qData), [T, h, 2 * dk]);
    const r = retrieve(queries, pk, { k });
    const f32 = (x: number) => Math.fround(x);
    const idx = r.indices.dataSync();
    const expected: number[] = [];
    const expectedIdx: number[] = [];
    for (let t = 0; t < T; t++) {
      for (let head = 0; head < h; head++) {
        const all: { n: number; s: number }[] = [];
        for (let i = 0; i < sqrtN; i++) {
          for (let j = 0; j < sqrtN; j++) {
            let s = 0;
            for (let d = 0; d < dk; d++) {
              const q1 = f32(qData[(t * h + head) * 2 * dk + d]!);
              const q2 = f32(qData[(t * h + head) * 2 * dk + dk + d]!);
              s += q1 * f32(keysData[((head * sqrtN + i) * 2 + 0) * dk + d]!) + q2 * f32(keysData[((head * sqrtN + j) * 2 + 1) * dk + d]!);
            }
            all.push({ n: i * sqrtN + j, s });
          }
        }
        all.sort((x, y) => y.s - x.s);
        expected.push(...all.slice(0, k).map((e) => e.s));
        expectedIdx.push(...all.slice(0, k).map((e) => e.n));
      }
    }
    expect(Array.from(idx), `seed ${rng.seed}`).toEqual(expectedIdx);
    expectClose(r.scores, expected, { rtol: 1e-5, floor: 1, label: `seed ${rng.seed}` });
    tf.dispose([keys, queries, r.indices, r.scores]);
    pk.dispose();
  });
});
