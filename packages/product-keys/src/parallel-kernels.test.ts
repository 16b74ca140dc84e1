// The retrieval kernels split over the kernel pool's threads (top-k rows, score backward, query
// BatchNorm columns) equal their one-thread results exactly (every output element is computed by
// one thread, in the same order as on one), and the plain references, on fresh random inputs.
// They run on the threaded wasm engine, whose heap is shared with the pool's workers; one thread
// is the same engine with the pool ended (setKernelThreads(1)).
// Axes: T tokens, h heads, k selections per head, n sub-keys per half, dk sub-key width,
// Q = T * h query rows, W row width (n), F query features.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '@peer/backend';
import { PASS_PARTS_PER_THREAD, engineHeap, isSharedMemory, kernelPool, setKernelThreads } from '@peer/backend/wasm';
import { testRng, type TestRng } from '@peer/test-utils';
import { disableHeapTopK, heapRowTopK, TOP_K_MIN_ROWS_PER_THREAD } from './heap-top-k.js';
import { COMBINE_MIN_ROWS_PER_PART } from './combine-halves-kernel.js';
import { selectTopK, type SelectionPlan } from './select-top-k.js';
import { disableHeapQueryNorm, QueryNorm } from './query-norm.js';
import { COLUMN_SUM_MIN_ELEMENTS_PER_THREAD, QUERY_NORM_MIN_ELEMENTS_PER_THREAD, QueryNormKernels } from './query-norm-kernels.js';
import { SCORE_GRAD_MIN_ROWS_PER_THREAD, scoreGradientsOnHeap } from './score-grad-kernel.js';
import { randomRows, sortedTopK } from './top-k-reference.test-util.js';

/** Unit roundoff of float32. */
const U = 2 ** -24;

/**
 * Float32 `got` against the float64 `want`, element by element, within the forward-error bound of
 * a float32 sum of `terms` products: (terms + 1) u sum|term| (`mass`, float64), plus a denormal floor.
 */
function expectWithinSumBound(got: Float32Array, want: Float64Array, mass: Float64Array, terms: number, label: string): void {
  for (let i = 0; i < got.length; i++) {
    const bound = (terms + 1) * U * mass[i]! + 1e-30;
    if (!(Math.abs(got[i]! - want[i]!) <= bound)) throw new Error(`${label}: [${i}] is ${got[i]}, float64 says ${want[i]} (bound ${bound})`);
  }
}

/** The parts a pass of `count` items is cut into on `threads` threads (@peer/backend/wasm's passParts). */
function partsOf(threads: number, count: number, minPerPart: number): number {
  return Math.min(threads * PASS_PARTS_PER_THREAD, Math.floor(count / minPerPart));
}

/** The first index where `a` and `b` differ in bits (NaNs included), or -1; fast on large arrays, unlike toEqual. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const [ua, ub] = [new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length)];
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

/** Runs `fn` with the kernel pool at `threads` (1: no pool); returns its result and the pool's (function, calls) passes. */
function withThreads<T>(threads: number, fn: () => T): { result: T; passes: [string, number][] } {
  expect(setKernelThreads(threads)).toBeUndefined();
  const pool = kernelPool();
  expect(pool?.threads ?? 1).toBe(threads);
  const run = pool && vi.spyOn(pool, 'run');
  try {
    const result = fn();
    return { result, passes: run ? run.mock.calls.map((call) => [call[3], call[4].length]) : [] };
  } finally {
    run?.mockRestore();
  }
}

beforeAll(async () => {
  const choice = await initBackend({ backend: 'wasm', threads: 2, log: false });
  expect(choice.threads).toBe(2);
  expect(isSharedMemory(engineHeap()!.memory)).toBe(true);
});

afterAll(() => {
  setKernelThreads(1);
});

describe('top-k rows on the kernel pool', () => {
  for (const threads of [2, 3]) {
    for (const levels of [0, 3]) {
      it(`${threads} threads: the one-thread result and sorting, bit for bit (${levels ? `${levels} distinct values` : 'normal values'})`, () => {
        const rng = testRng();
        const [rows, width, k] = [3 * TOP_K_MIN_ROWS_PER_THREAD + rng.int(200), 1024, 16];
        const scores = randomRows(rng, rows, width, levels);
        const before = tf.memory().numTensors;
        const topK = () => {
          const values = new Float32Array(rows * k);
          const indices = new Int32Array(rows * k);
          expect(tf.tidy(() => heapRowTopK(tf.tensor2d(scores, [rows, width]), rows, width, k, values, indices))).toBe(true);
          return { values, indices };
        };
        const one = withThreads(1, topK).result;
        const many = withThreads(threads, topK);
        expect(many.passes).toEqual([['row_topk', partsOf(threads, rows, TOP_K_MIN_ROWS_PER_THREAD)]]);
        expect(many.result.values).toEqual(one.values);
        expect(many.result.indices).toEqual(one.indices);
        for (let r = 0; r < rows; r++) {
          const want = sortedTopK(scores.subarray(r * width, (r + 1) * width), k);
          expect(Array.from(many.result.indices.subarray(r * k, (r + 1) * k)), `row ${r}, seed ${rng.seed}`).toEqual(want.indices);
          expect(Array.from(many.result.values.subarray(r * k, (r + 1) * k)), `row ${r}, seed ${rng.seed}`).toEqual(want.values);
        }
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }

  it('keeps a small pass on one thread', () => {
    const rng = testRng();
    const [rows, width, k] = [TOP_K_MIN_ROWS_PER_THREAD * 2 - 1, 256, 8];
    const scores = randomRows(rng, rows, width, 0);
    const { passes } = withThreads(2, () =>
      tf.tidy(() => heapRowTopK(tf.tensor2d(scores, [rows, width]), rows, width, k, new Float32Array(rows * k), new Int32Array(rows * k))),
    );
    expect(passes).toEqual([]);
  });
});

describe('the selection (top-k rows and pair stage) on the kernel pool', () => {
  for (const threads of [2, 3]) {
    for (const shared of [false, true]) {
      it(`${threads} threads, ${shared ? 'shared' : 'per-head'} sub-keys: the one-thread selection bit for bit, and the JS loops'`, () => {
        const rng = testRng();
        // Chunks of 160 tokens x 4 heads: passes of 640 rows, in more parts than threads.
        const [T, h, n, dk, k] = [200 + rng.int(200), 4, 64, 8, 16];
        const sets = shared ? 1 : h;
        const q = tf.tensor3d(Float32Array.from(rng.normals(T * h * 2 * dk)), [T, h, 2 * dk]);
        const c1T = tf.tensor3d(Float32Array.from(rng.normals(sets * dk * n)), [sets, dk, n]);
        const c2T = tf.tensor3d(Float32Array.from(rng.normals(sets * dk * n)), [sets, dk, n]);
        const plan: SelectionPlan = { tokens: T, heads: h, dimKey: dk, sqrtN: n, k, chunkTokens: 160 };
        const before = tf.memory().numTensors;
        const select = () => tf.tidy(() => Float32Array.from(selectTopK(q, c1T, c2T, plan).dataSync() as Float32Array));
        const one = withThreads(1, select).result;
        const many = withThreads(threads, select);
        const combines = many.passes.filter(([fn]) => fn === 'combine_pairs');
        // One pass per chunk (both layouts hold every head of a chunk in one block product here).
        const chunks = Array.from({ length: Math.ceil(T / 160) }, (_, c) => Math.min(160, T - 160 * c));
        expect(combines.map(([, calls]) => calls)).toEqual(chunks.map((size) => partsOf(threads, size * h, COMBINE_MIN_ROWS_PER_PART)).filter((c) => c > 1));
        expect(firstDifference(many.result, one), `seed ${rng.seed}`).toBe(-1);
        disableHeapTopK(true);
        try {
          expect(firstDifference(withThreads(1, select).result, one), `JS loops, seed ${rng.seed}`).toBe(-1);
        } finally {
          disableHeapTopK(false);
        }
        expect(tf.memory().numTensors).toBe(before);
        tf.dispose([q, c1T, c2T]);
      });
    }
  }
});

interface ScoreGradCase {
  T: number;
  h: number;
  k: number;
  n: number;
  dk: number;
  /** Each head its own sub-key set (else one shared set). */
  perHead: boolean;
  q: Float32Array;
  c: [Float32Array, Float32Array];
  ids: [Int32Array, Int32Array];
  dy: Float32Array;
}

function scoreGradCase(rng: TestRng, perHead: boolean): ScoreGradCase {
  // Few sub-keys for many selections: most table rows are selected by several tokens at once.
  const [T, h, k, n, dk] = [(7 * SCORE_GRAD_MIN_ROWS_PER_THREAD) / 4 + rng.int(32), 4, 8, 32, 24];
  const sets = perHead ? h : 1;
  const floats = (count: number) => Float32Array.from(rng.normals(count));
  const ids = () => Int32Array.from({ length: T * h * k }, () => rng.int(n));
  return { T, h, k, n, dk, perHead, q: floats(T * h * 2 * dk), c: [floats(sets * n * dk), floats(sets * n * dk)], ids: [ids(), ids()], dy: floats(T * h * k) };
}

/** scoreGradientsOnHeap's three gradients, copied out. */
function scoreGrads(x: ScoreGradCase): Float32Array[] {
  const sets = x.perHead ? x.h : 1;
  return tf.tidy(() => {
    const grads = scoreGradientsOnHeap({
      queries: tf.tensor3d(x.q, [x.T, x.h, 2 * x.dk]),
      subKeys: [tf.tensor3d(x.c[0], [sets, x.n, x.dk]), tf.tensor3d(x.c[1], [sets, x.n, x.dk])],
      ids: [tf.tensor3d(x.ids[0], [x.T, x.h, x.k], 'int32'), tf.tensor3d(x.ids[1], [x.T, x.h, x.k], 'int32')],
      heads: x.h,
      headRows: x.perHead ? x.n : 0,
      dy: tf.tensor3d(x.dy, [x.T, x.h, x.k]),
      k: x.k,
      dimKey: x.dk,
    });
    return grads.map((g) => Float32Array.from(g.dataSync() as Float32Array));
  });
}

/** Float64 dq, dC1, dC2, the sums of |term| of each, and the most terms any dC element sums. */
function scoreGradReference(x: ScoreGradCase): { want: Float64Array[]; mass: Float64Array[]; dcTerms: number } {
  const { T, h, k, n, dk } = x;
  const sets = x.perHead ? h : 1;
  const want = [new Float64Array(T * h * 2 * dk), new Float64Array(sets * n * dk), new Float64Array(sets * n * dk)];
  const mass = want.map((w) => new Float64Array(w.length));
  const counts = new Int32Array(sets * n);
  for (let r = 0; r < T * h; r++) {
    const set = x.perHead ? r % h : 0;
    for (const half of [0, 1] as const) {
      for (let j = 0; j < k; j++) {
        const row = set * n + x.ids[half][r * k + j]!;
        const w = x.dy[r * k + j]!;
        if (half === 0) counts[row]!++;
        for (let i = 0; i < dk; i++) {
          const qi = r * 2 * dk + half * dk + i;
          const ci = row * dk + i;
          const toQ = w * x.c[half][ci]!;
          const toC = w * x.q[qi]!;
          want[0]![qi]! += toQ;
          mass[0]![qi]! += Math.abs(toQ);
          want[1 + half]![ci]! += toC;
          mass[1 + half]![ci]! += Math.abs(toC);
        }
      }
    }
  }
  // Both halves draw their ids independently: bound by the busier of the two.
  const counts2 = new Int32Array(sets * n);
  for (let r = 0; r < T * h; r++) for (let j = 0; j < k; j++) counts2[(x.perHead ? r % h : 0) * n + x.ids[1][r * k + j]!]!++;
  return { want, mass, dcTerms: Math.max(...counts, ...counts2) };
}

describe('the score backward on the kernel pool', () => {
  for (const threads of [2, 3]) {
    for (const perHead of [true, false]) {
      it(`${threads} threads, ${perHead ? 'per-head' : 'shared'} sub-keys: the one-thread result exactly, and float64`, () => {
        const rng = testRng();
        const x = scoreGradCase(rng, perHead);
        const before = tf.memory().numTensors;
        const one = withThreads(1, () => scoreGrads(x)).result;
        const many = withThreads(threads, () => scoreGrads(x));
        // Per half: dq over query rows, then dC over table rows (one part per thread: each walks every selection).
        const dqParts = partsOf(threads, x.T * x.h, SCORE_GRAD_MIN_ROWS_PER_THREAD);
        expect(dqParts).toBeGreaterThan(threads);
        expect(many.passes).toEqual([
          ['score_grad_dq', dqParts],
          ['score_grad_dc', threads],
          ['score_grad_dq', dqParts],
          ['score_grad_dc', threads],
        ]);
        for (let g = 0; g < 3; g++) expect(firstDifference(many.result[g]!, one[g]!), `gradient ${g}, seed ${rng.seed}`).toBe(-1);
        const again = withThreads(threads, () => scoreGrads(x)).result;
        for (let g = 0; g < 3; g++) expect(firstDifference(again[g]!, many.result[g]!)).toBe(-1);

        const ref = scoreGradReference(x);
        const label = `seed ${rng.seed}, ${threads} threads`;
        expectWithinSumBound(many.result[0]!, ref.want[0]!, ref.mass[0]!, x.k, `dq ${label}`);
        expectWithinSumBound(many.result[1]!, ref.want[1]!, ref.mass[1]!, ref.dcTerms, `dC1 ${label}`);
        expectWithinSumBound(many.result[2]!, ref.want[2]!, ref.mass[2]!, ref.dcTerms, `dC2 ${label}`);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
});

/** colSum, colSumProd, affine and bnGrad of one QueryNormKernels on [t, f] inputs, copied out. */
function columnPasses(k: QueryNormKernels, t: number, f: number, a: Float32Array, b: Float32Array, vectors: Float32Array[]): Float32Array[] {
  k.reset();
  const [ar, br, affR, gradR] = [0, 1, 2, 3].map(() => k.alloc(t * f));
  const [sumR, prodR, s, m, d, p, q, c] = [0, 1, 2, 3, 4, 5, 6, 7].map(() => k.alloc(f));
  k.view(ar!).set(a);
  k.view(br!).set(b);
  [s, m, d, p, q, c].forEach((r, i) => k.view(r!).set(vectors[i]!));
  k.colSum(ar!, sumR!, t, f);
  k.colSumProd(ar!, br!, prodR!, t, f);
  k.affine(ar!, s!, m!, d!, affR!, t, f);
  k.bnGrad(ar!, br!, p!, q!, c!, gradR!, t, f);
  return [sumR!, prodR!, affR!, gradR!].map((r) => k.view(r).slice());
}

describe('query BatchNorm columns on the kernel pool', () => {
  for (const threads of [2, 3]) {
    it(`${threads} threads: the column kernels give the one-thread result exactly, and float64`, () => {
      const rng = testRng();
      const f = 1024;
      const t = (3 * COLUMN_SUM_MIN_ELEMENTS_PER_THREAD) / f + rng.int(64);
      const a = Float32Array.from(rng.normals(t * f));
      const b = Float32Array.from(rng.normals(t * f));
      const vectors = [0, 1, 2, 3, 4, 5].map(() => Float32Array.from(rng.normals(f)));
      const one = withThreads(1, () => {
        const k = new QueryNormKernels();
        expect(k.shared).toBe(false);
        return { k, out: columnPasses(k, t, f, a, b, vectors) };
      }).result;
      const many = withThreads(threads, () => {
        // The instance made without a pool moves to a shared memory at its next reset.
        const out = columnPasses(one.k, t, f, a, b, vectors);
        expect(one.k.shared).toBe(true);
        return out;
      });
      expect(many.passes).toEqual([
        ['col_sum', partsOf(threads, t * f, COLUMN_SUM_MIN_ELEMENTS_PER_THREAD)],
        ['col_sum_prod', partsOf(threads, t * f, COLUMN_SUM_MIN_ELEMENTS_PER_THREAD)],
        ['affine', partsOf(threads, t * f, QUERY_NORM_MIN_ELEMENTS_PER_THREAD)],
        ['bn_grad', partsOf(threads, t * f, QUERY_NORM_MIN_ELEMENTS_PER_THREAD)],
      ]);
      for (let i = 0; i < 4; i++) expect(firstDifference(many.result[i]!, one.out[i]!), `pass ${i}, seed ${rng.seed}`).toBe(-1);

      const [s, m, d, p, q, c] = vectors as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
      const want = [new Float64Array(f), new Float64Array(f), new Float64Array(t * f), new Float64Array(t * f)];
      const mass = want.map((w) => new Float64Array(w.length));
      for (let i = 0; i < t; i++) {
        for (let j = 0; j < f; j++) {
          const [x, y] = [a[i * f + j]!, b[i * f + j]!];
          want[0]![j]! += x;
          mass[0]![j]! += Math.abs(x);
          want[1]![j]! += x * y;
          mass[1]![j]! += Math.abs(x * y);
          want[2]![i * f + j] = (x - s[j]!) * m[j]! + d[j]!;
          mass[2]![i * f + j] = (Math.abs(x) + Math.abs(s[j]!)) * Math.abs(m[j]!) + Math.abs(d[j]!);
          want[3]![i * f + j] = (x - p[j]! - y * q[j]!) * c[j]!;
          mass[3]![i * f + j] = (Math.abs(x) + Math.abs(p[j]!) + Math.abs(y * q[j]!)) * Math.abs(c[j]!);
        }
      }
      const label = `seed ${rng.seed}, ${threads} threads`;
      expectWithinSumBound(many.result[0]!, want[0]!, mass[0]!, t, `colSum ${label}`);
      expectWithinSumBound(many.result[1]!, want[1]!, mass[1]!, t, `colSumProd ${label}`);
      // A few roundings each: (x - s) m + d, (x - p - y q) c.
      expectWithinSumBound(many.result[2]!, want[2]!, mass[2]!, 3, `affine ${label}`);
      expectWithinSumBound(many.result[3]!, want[3]!, mass[3]!, 4, `bnGrad ${label}`);
    });

    it(`${threads} threads: a training QueryNorm (in place on the heap) gives the one-thread outputs and gradients exactly, and those of the copy path`, () => {
      const rng = testRng();
      // The PEER benchmark's query width (h 8, dk 128) over 256 tokens: 2 column ranges at most.
      const [t, f] = [256, 2048];
      const parts = Math.min(threads, Math.floor((t * f) / QUERY_NORM_MIN_ELEMENTS_PER_THREAD));
      expect(parts).toBeGreaterThan(1);
      const q = Float32Array.from(rng.normals(t * f, 2));
      const dy = Float32Array.from(rng.normals(t * f));
      const step = () => {
        const norm = new QueryNorm({ kind: 'batch', features: f, momentum: 0.1, eps: 1e-5 });
        const before = tf.memory().numTensors;
        const out = tf.tidy(() => {
          const qt = tf.tensor2d(q, [t, f]);
          const dyt = tf.tensor2d(dy, [t, f]);
          const y = norm.apply(qt, true);
          const [dq] = tf.grads((x: tf.Tensor) => tf.sum(tf.mul(norm.apply(x as tf.Tensor2D, true, false), dyt)))([qt]);
          return [y, dq!, ...norm.variables()].map((v) => Float32Array.from(v.dataSync() as Float32Array));
        });
        expect(tf.memory().numTensors).toBe(before);
        norm.dispose();
        return out;
      };
      const one = withThreads(1, step).result;
      const many = withThreads(threads, step);
      // The kernels run in place on the engine's heap; on a copy in their own memory they give the same bits.
      disableHeapQueryNorm(true);
      const copies = (() => {
        try {
          return withThreads(1, step).result;
        } finally {
          disableHeapQueryNorm(false);
        }
      })();
      for (let i = 0; i < one.length; i++) expect(firstDifference(copies[i]!, one[i]!), `copy path, output ${i}, seed ${rng.seed}`).toBe(-1);
      // The step's elementwise ops (@peer/backend's pooled Add/Sub/Multiply) use the pool too: count QueryNorm's passes.
      const normPasses = many.passes.filter(([fn]) => ['col_sum', 'col_sum_prod', 'affine', 'bn_grad'].includes(fn));
      expect(normPasses.length).toBeGreaterThan(0);
      expect(normPasses.every(([, calls]) => calls === parts)).toBe(true);
      for (let i = 0; i < one.length; i++) expect(firstDifference(many.result[i]!, one[i]!), `output ${i}, seed ${rng.seed}`).toBe(-1);
    });
  }
});
