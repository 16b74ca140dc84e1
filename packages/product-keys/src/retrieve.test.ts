// Exactness of retrieve against a float64 brute force over all N full keys.
// Axes: T tokens, h heads, n = sqrt(N) sub-keys per half, dk key width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { ProductKeys } from './product-keys.js';
import { retrieve } from './retrieve.js';
import { setScoreBlockMaxBytes } from './select-top-k.js';

interface Problem {
  T: number;
  h: number;
  sqrtN: number;
  dk: number;
  /** Key sets: 1 when shared, else h. */
  sets: number;
  /** [T, h, 2dk] */
  q: Float64Array;
  /** [sets, n, dk] */
  c1: Float64Array;
  c2: Float64Array;
}

function makeProblem(rng: TestRng, T: number, h: number, sqrtN: number, dk: number, shared: boolean): Problem {
  const sets = shared ? 1 : h;
  const bound = 1 / Math.sqrt(dk);
  // Rounded to float32 up front so that the reference sees exactly what tfjs sees.
  const f32 = (x: Float64Array) => Float64Array.from(Float32Array.from(x));
  return {
    T,
    h,
    sqrtN,
    dk,
    sets,
    q: f32(rng.normals(T * h * 2 * dk)),
    c1: f32(rng.uniforms(sets * sqrtN * dk, -bound, bound)),
    c2: f32(rng.uniforms(sets * sqrtN * dk, -bound, bound)),
  };
}

function tensors(p: Problem) {
  return {
    queries: tf.tensor3d(Float32Array.from(p.q), [p.T, p.h, 2 * p.dk]),
    keys: {
      subKeys1: tf.tensor3d(Float32Array.from(p.c1), [p.sets, p.sqrtN, p.dk]),
      subKeys2: tf.tensor3d(Float32Array.from(p.c2), [p.sets, p.sqrtN, p.dk]),
    },
  };
}

/** The full key of expert `n` = i * sqrtN + j for head `head`: [C1_i ; C2_j], float64. */
function fullKey(p: Problem, head: number, n: number): number[] {
  const set = p.sets === 1 ? 0 : head;
  const i = Math.floor(n / p.sqrtN);
  const j = n % p.sqrtN;
  const key: number[] = [];
  for (let d = 0; d < p.dk; d++) key.push(p.c1[(set * p.sqrtN + i) * p.dk + d]!);
  for (let d = 0; d < p.dk; d++) key.push(p.c2[(set * p.sqrtN + j) * p.dk + d]!);
  return key;
}

function exactScore(p: Problem, t: number, head: number, n: number): number {
  const key = fullKey(p, head, n);
  let s = 0;
  for (let d = 0; d < 2 * p.dk; d++) s += p.q[(t * p.h + head) * 2 * p.dk + d]! * key[d]!;
  return s;
}

/** Brute force: all N scores of (t, head), sorted best first. */
function bruteForce(p: Problem, t: number, head: number): { index: number; score: number }[] {
  const all: { index: number; score: number }[] = [];
  for (let n = 0; n < p.sqrtN * p.sqrtN; n++) all.push({ index: n, score: exactScore(p, t, head, n) });
  return all.sort((x, y) => y.score - x.score);
}

/** |score| can be at most this for (t, head): keys lie in [-1/sqrt(dk), 1/sqrt(dk)]. */
function scoreScale(p: Problem, t: number, head: number): number {
  let s = 0;
  for (let d = 0; d < 2 * p.dk; d++) s += Math.abs(p.q[(t * p.h + head) * 2 * p.dk + d]!);
  return s / Math.sqrt(p.dk);
}

/**
 * Checks indices and scores against brute force. Two experts count as tied when their float64
 * scores differ by less than float32 rounding can (1e-6 of the largest possible |score|); a tie
 * may come out in either order. Returns how many positions held a tied, different expert.
 */
function expectExact(p: Problem, indices: tf.Tensor, scores: tf.Tensor, k: number, label: string): number {
  expect(indices.dtype).toBe('int32');
  expect(indices.shape).toEqual([p.T, p.h, k]);
  expect(scores.shape).toEqual([p.T, p.h, k]);
  const idx = indices.dataSync();
  const sc = scores.dataSync();
  let tiedSwaps = 0;
  for (let t = 0; t < p.T; t++) {
    for (let head = 0; head < p.h; head++) {
      const ref = bruteForce(p, t, head);
      const tieTol = 1e-6 * scoreScale(p, t, head);
      const row = (t * p.h + head) * k;
      const got = Array.from(idx.subarray(row, row + k));
      const where = `${label} t=${t} head=${head} got [${got}] expected [${ref.slice(0, k).map((r) => r.index)}]`;
      expect(new Set(got).size, `${where}: repeated index`).toBe(k);
      for (let j = 0; j < k; j++) {
        expect(got[j]! >= 0 && got[j]! < p.sqrtN * p.sqrtN, `${where}: index out of range`).toBe(true);
        if (got[j] !== ref[j]!.index) {
          const diff = Math.abs(exactScore(p, t, head, got[j]!) - ref[j]!.score);
          expect(diff, `${where}: position ${j} is not a tie`).toBeLessThanOrEqual(tieTol);
          tiedSwaps++;
        }
        if (j > 0) expect(sc[row + j]!, `${where}: scores not descending`).toBeLessThanOrEqual(sc[row + j - 1]!);
      }
      expectClose(
        sc.subarray(row, row + k),
        ref.slice(0, k).map((r) => r.score),
        { rtol: 1e-5, floor: 1, label: where },
      );
    }
  }
  return tiedSwaps;
}

const CASES: { N: number; h: number; k: number; dk: number; T: number; shared: boolean }[] = [
  { N: 4, h: 1, k: 1, dk: 1, T: 9, shared: false },
  { N: 4, h: 2, k: 2, dk: 2, T: 5, shared: true },
  { N: 16, h: 2, k: 4, dk: 3, T: 7, shared: false },
  { N: 64, h: 3, k: 1, dk: 8, T: 6, shared: true },
  { N: 256, h: 4, k: 5, dk: 16, T: 5, shared: false },
  { N: 1024, h: 2, k: 32, dk: 8, T: 4, shared: true },
  { N: 1024, h: 2, k: 8, dk: 128, T: 4, shared: false },
  { N: 4096, h: 2, k: 16, dk: 32, T: 3, shared: false },
];

describe('retrieve equals brute-force top-k over all N keys', () => {
  for (const c of CASES) {
    it(`N=${c.N} h=${c.h} k=${c.k} dk=${c.dk} ${c.shared ? 'shared' : 'per-head'} keys`, () => {
      const rng = testRng();
      const p = makeProblem(rng, c.T, c.h, Math.sqrt(c.N), c.dk, c.shared);
      const { queries, keys } = tensors(p);
      const r = retrieve(queries, keys, { k: c.k });
      const swaps = expectExact(p, r.indices, r.scores, c.k, `seed ${rng.seed}`);
      // Ties are rare with random inputs; many swaps would mean a loose tie tolerance hides errors.
      expect(swaps).toBeLessThanOrEqual(1);
      tf.dispose([queries, keys.subKeys1, keys.subKeys2, r.indices, r.scores]);
    });
  }

  it('stays exact with candidateK > k, up to candidateK = sqrt(N)', () => {
    const rng = testRng();
    for (const shared of [false, true]) {
      const p = makeProblem(rng, 6, 3, 16, 8, shared);
      const { queries, keys } = tensors(p);
      for (const candidateK of [4, 9, 16]) {
        const r = retrieve(queries, keys, { k: 4, candidateK });
        expectExact(p, r.indices, r.scores, 4, `seed ${rng.seed} shared=${shared} candidateK=${candidateK}`);
        tf.dispose([r.indices, r.scores]);
      }
      tf.dispose([queries, keys.subKeys1, keys.subKeys2]);
    }
  });

  it('works with ProductKeys and indexes experts as i * sqrt(N) + j', () => {
    const rng = testRng();
    const pk = new ProductKeys({ numKeys: 64, heads: 2, dimKey: 4, seed: rng.int(1e9) });
    const T = 5;
    const q = Float64Array.from(Float32Array.from(rng.normals(T * 2 * 8)));
    const p: Problem = {
      T,
      h: 2,
      sqrtN: 8,
      dk: 4,
      sets: 2,
      q,
      c1: Float64Array.from(pk.subKeys1.dataSync()),
      c2: Float64Array.from(pk.subKeys2.dataSync()),
    };
    const queries = tf.tensor3d(Float32Array.from(q), [T, 2, 8]);
    const r = retrieve(queries, pk, { k: 3 });
    expectExact(p, r.indices, r.scores, 3, `seed ${rng.seed}`);
    // Spelled out for one result: the score is q1 . C1[i] + q2 . C2[j] with i, j from the index.
    const n = r.indices.dataSync()[0]!;
    const [i, j] = [Math.floor(n / 8), n % 8];
    let s = 0;
    for (let d = 0; d < 4; d++) s += q[d]! * p.c1[i * 4 + d]! + q[4 + d]! * p.c2[j * 4 + d]!;
    expect(r.scores.dataSync()[0]!).toBeCloseTo(s, 5);
    tf.dispose([queries, r.indices, r.scores]);
    pk.dispose();
  });

  it('handles an empty batch', () => {
    const keys = { subKeys1: tf.zeros([2, 4, 3]), subKeys2: tf.zeros([2, 4, 3]) };
    const r = retrieve(tf.zeros([0, 2, 6]), keys, { k: 2 });
    expect(r.indices.shape).toEqual([0, 2, 2]);
    expect(r.scores.shape).toEqual([0, 2, 2]);
    tf.dispose([keys.subKeys1, keys.subKeys2, r.indices, r.scores]);
  });
});

describe('chunking', () => {
  it('gives identical results for every chunk size', () => {
    const rng = testRng();
    for (const shared of [false, true]) {
      const p = makeProblem(rng, 23, 3, 32, 16, shared);
      const { queries, keys } = tensors(p);
      const whole = retrieve(queries, keys, { k: 6, candidateK: 8 });
      expectExact(p, whole.indices, whole.scores, 6, `seed ${rng.seed}`);
      const options = [{ chunkSize: 1 }, { chunkSize: 4 }, { chunkSize: 7 }, { chunkSize: 23 }, { chunkSize: 1000 }, { maxChunkElements: 3 * 64 * 5 }];
      for (const o of options) {
        const part = retrieve(queries, keys, { k: 6, candidateK: 8, ...o });
        expect(Array.from(part.indices.dataSync()), JSON.stringify(o)).toEqual(Array.from(whole.indices.dataSync()));
        expect(Array.from(part.scores.dataSync()), JSON.stringify(o)).toEqual(Array.from(whole.scores.dataSync()));
        tf.dispose([part.indices, part.scores]);
      }
      tf.dispose([queries, keys.subKeys1, keys.subKeys2, whole.indices, whole.scores]);
    }
  });

  it('gives identical results when per-head products are taken a group of heads at a time', () => {
    const rng = testRng();
    const [T, h, sqrtN] = [11, 5, 16];
    const p = makeProblem(rng, T, h, sqrtN, 8, false);
    const { queries, keys } = tensors(p);
    const whole = retrieve(queries, keys, { k: 4, candidateK: 4 });
    expectExact(p, whole.indices, whole.scores, 4, `seed ${rng.seed}`);
    // Score blocks of 1, 2 and 3 heads (the last group smaller): 2 halves x T rows x n floats each.
    for (const groupHeads of [1, 2, 3]) {
      setScoreBlockMaxBytes(groupHeads * 2 * T * sqrtN * 4);
      try {
        const part = retrieve(queries, keys, { k: 4, candidateK: 4 });
        expect(Array.from(part.indices.dataSync()), `${groupHeads} heads`).toEqual(Array.from(whole.indices.dataSync()));
        expect(Array.from(part.scores.dataSync()), `${groupHeads} heads`).toEqual(Array.from(whole.scores.dataSync()));
        tf.dispose([part.indices, part.scores]);
      } finally {
        setScoreBlockMaxBytes(undefined);
      }
    }
    tf.dispose([queries, keys.subKeys1, keys.subKeys2, whole.indices, whole.scores]);
  });
});

describe('memory', () => {
  it('leaks no tensors, with and without chunks', async () => {
    const rng = testRng();
    const { queries, keys } = tensors(makeProblem(rng, 10, 2, 8, 4, false));
    for (const chunkSize of [undefined, 3]) {
      await expectNoLeaks(() => {
        const r = retrieve(queries, keys, { k: 3, candidateK: 5, chunkSize });
        tf.dispose([r.indices, r.scores]);
      });
    }
    tf.dispose([queries, keys.subKeys1, keys.subKeys2]);
  });
});
