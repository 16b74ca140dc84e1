// The JS row top-k and candidate-pair stage against plain sorting references and against tf.topk
// (bit for bit, ties included), and the whole selection against the tf-op pipeline it replaced.
// Axes: Q rows (queries, as row-top-k.ts names them), W row width, k results, T tokens, h heads, H' key
// sets, n = sqrt(N) sub-keys per half, dk key width.
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { describe, expect, it, onTestFinished } from 'vitest';
import { randomRows, sortedTopK } from './top-k-reference.test-util.js';
import { engineHeap, readFloats } from '@peer/backend/wasm';
import { combineHalves, combineScratch, rowTopK } from './row-top-k.js';
import { leadingRow } from './leading-rows.js';
import { candidatePairs, selectTopK, type SelectionPlan } from './select-top-k.js';
import { disableHeapTopK, heapTopKRuns } from './heap-top-k.js';

function runRowTopK(scores: Float32Array, rows: number, width: number, k: number) {
  const values = new Float32Array(rows * k);
  const indices = new Int32Array(rows * k);
  rowTopK(scores, rows, width, k, values, indices);
  return { values, indices };
}

describe('rowTopK', () => {
  const cases: [rows: number, width: number, k: number, levels: number][] = [
    [5, 1, 1, 0],
    [7, 128, 1, 0],
    [7, 128, 16, 0],
    [3, 64, 64, 0],
    [6, 300, 17, 3],
    [6, 50, 50, 4],
    [4, 1024, 64, 7],
    [4, 200, 9, 1],
  ];
  for (const [rows, width, k, levels] of cases) {
    it(`equals sorting and tf.topk for Q=${rows}, W=${width}, k=${k}, ${levels ? `${levels} distinct values` : 'normal values'}`, () => {
      const rng = testRng();
      const scores = randomRows(rng, rows, width, levels);
      // Sorted rows (ascending and descending) are the worst and best cases of the insertion.
      scores.subarray(0, width).sort();
      if (rows > 1) scores.subarray(width, 2 * width).sort().reverse();
      const got = runRowTopK(scores, rows, width, k);
      for (let r = 0; r < rows; r++) {
        const want = sortedTopK(scores.subarray(r * width, (r + 1) * width), k);
        expect(Array.from(got.indices.subarray(r * k, (r + 1) * k)), `row ${r} indices, seed ${rng.seed}`).toEqual(want.indices);
        expect(Array.from(got.values.subarray(r * k, (r + 1) * k)), `row ${r} values, seed ${rng.seed}`).toEqual(want.values);
      }
      const ref = tf.tidy(() => {
        const { values, indices } = tf.topk(tf.tensor2d(scores, [rows, width]), k, true);
        return { values: values.dataSync(), indices: indices.dataSync() };
      });
      expect(got.indices, `tf.topk indices, seed ${rng.seed}`).toEqual(Int32Array.from(ref.indices));
      expect(got.values, `tf.topk values, seed ${rng.seed}`).toEqual(Float32Array.from(ref.values));
    });
  }
});

describe('combineHalves', () => {
  for (const [k, levels] of [
    [1, 0],
    [16, 0],
    [16, 2],
    [5, 3],
  ] as const) {
    it(`takes the top-${k} of the candidate sums, ties in pair order (${levels ? `${levels} distinct values` : 'normal values'})`, () => {
      const rng = testRng();
      const rows = 9;
      const { first: pf, second: ps } = candidatePairs(k);
      const half = () => {
        // Each half's row sorted descending, as rowTopK leaves it; indices arbitrary distinct ids.
        const values = randomRows(rng, rows, k, levels);
        for (let r = 0; r < rows; r++) values.subarray(r * k, (r + 1) * k).sort().reverse();
        return { values, indices: Int32Array.from({ length: rows * k }, (_, i) => 1000 + i * 7) };
      };
      const first = half();
      const second = half();
      const outStride = 2;
      const outOffset = 1;
      const packed = new Float32Array(3 * rows * outStride * k).fill(-7);
      const slot = rows * outStride * k;
      combineHalves(first, second, rows, k, Int32Array.from(pf), Int32Array.from(ps), packed, slot, outStride, outOffset, combineScratch(k));
      for (let r = 0; r < rows; r++) {
        const sums = pf.map((a, p) => Math.fround(first.values[r * k + a]! + second.values[r * k + ps[p]!]!));
        const want = sortedTopK(sums, k);
        const out = (r * outStride + outOffset) * k;
        expect(Array.from(packed.subarray(out, out + k)), `row ${r} scores, seed ${rng.seed}`).toEqual(want.values);
        expect(Array.from(packed.subarray(slot + out, slot + out + k))).toEqual(want.indices.map((p) => first.indices[r * k + pf[p]!]!));
        expect(Array.from(packed.subarray(2 * slot + out, 2 * slot + out + k))).toEqual(want.indices.map((p) => second.indices[r * k + ps[p]!]!));
        // Rows of other heads are untouched.
        const other = r * outStride * k;
        expect(Array.from(packed.subarray(other, other + k))).toEqual(new Array(k).fill(-7));
      }
    });
  }
});

describe('readFloats', () => {
  it('reads a tensor computed by a kernel', () => {
    const x = tf.tidy(() => tf.add(tf.tensor1d([1, 2, 3]), tf.scalar(0.5)));
    expect(Array.from(readFloats(x))).toEqual([1.5, 2.5, 3.5]);
    x.dispose();
  });
});

/** The selection as chained tf ops (the implementation before the JS kernels), one chunk. */
function tfOpsSelection(queries: tf.Tensor3D, c1: tf.Tensor3D, c2: tf.Tensor3D, k: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [T, h, twoDk] = queries.shape;
    const dk = twoDk / 2;
    const sets = c1.shape[0];
    const { first: pf, second: ps } = candidatePairs(k);
    const pairFirst = tf.tensor1d(pf, 'int32');
    const pairSecond = tf.tensor1d(ps, 'int32');
    const perHead: tf.Tensor[] = [];
    for (let head = 0; head < h; head++) {
      const set = sets === 1 ? 0 : head;
      const q = leadingRow(tf.transpose(queries, [1, 0, 2]), head) as tf.Tensor2D; // [T, 2dk]
      const half = (which: number, table: tf.Tensor3D) => {
        const qHalf = tf.slice(q, [0, which * dk], [T, dk]);
        return tf.topk(tf.matMul(qHalf, tf.transpose(leadingRow(table, set) as tf.Tensor2D)), k, true);
      };
      const one = half(0, c1);
      const two = half(1, c2);
      const sums = tf.add(tf.gather(tf.transpose(one.values), pairFirst), tf.gather(tf.transpose(two.values), pairSecond));
      const best = tf.topk(tf.transpose(sums), k, true);
      const rowStart = tf.reshape(tf.range(0, T * k, k, 'int32'), [T, 1]);
      const a = tf.gather(tf.reshape(one.indices, [T * k]), tf.add(tf.gather(pairFirst, best.indices), rowStart));
      const b = tf.gather(tf.reshape(two.indices, [T * k]), tf.add(tf.gather(pairSecond, best.indices), rowStart));
      perHead.push(tf.stack([best.values, tf.cast(a, 'float32'), tf.cast(b, 'float32')])); // [3, T, k]
    }
    return tf.stack(perHead, 2) as tf.Tensor4D; // [3, T, h, k]
  });
}

describe('selectTopK', () => {
  const cases: [T: number, h: number, sqrtN: number, dk: number, k: number, shared: boolean, integerData: boolean][] = [
    [13, 3, 32, 8, 16, false, false],
    [13, 3, 32, 8, 16, true, false],
    [9, 2, 16, 4, 1, false, false],
    [9, 2, 16, 4, 16, true, false],
    [11, 2, 24, 3, 7, false, true],
    [11, 3, 24, 2, 24, true, true],
    // n >= 4k, a multiple of 4: the heap kernels' path (heap-top-k.ts, combine-halves-kernel.ts).
    [13, 3, 64, 8, 16, false, false],
    [13, 3, 64, 8, 16, true, false],
    [11, 2, 32, 3, 8, false, true],
    [11, 3, 32, 2, 8, true, true],
  ];
  for (const [T, h, sqrtN, dk, k, shared, integerData] of cases) for (const jsOnly of sqrtN % 4 === 0 && sqrtN >= 4 * k ? [false, true] : [true]) {
    it(`equals the tf-op selection bit for bit: T=${T}, h=${h}, n=${sqrtN}, dk=${dk}, k=${k}, ${shared ? 'shared' : 'per-head'} keys${integerData ? ', small integers (ties)' : ''}, ${jsOnly ? 'JS loops' : 'heap kernels'}`, async () => {
      disableHeapTopK(jsOnly);
      onTestFinished(() => disableHeapTopK(false));
      if (engineHeap()) expect(heapTopKRuns(sqrtN, k)).toBe(!jsOnly);
      const rng = testRng();
      const sets = shared ? 1 : h;
      // Small integers make many exactly equal sub-key scores and pair sums.
      const draw = (n: number) => (integerData ? Float32Array.from({ length: n }, () => rng.int(3) - 1) : Float32Array.from(rng.normals(n, 1)));
      const queries = tf.tensor3d(draw(T * h * 2 * dk), [T, h, 2 * dk]);
      const c1 = tf.tensor3d(draw(sets * sqrtN * dk), [sets, sqrtN, dk]);
      const c2 = tf.tensor3d(draw(sets * sqrtN * dk), [sets, sqrtN, dk]);
      const plan: SelectionPlan = { tokens: T, heads: h, dimKey: dk, sqrtN, k, chunkTokens: 4 };
      const select = () => tf.tidy(() => selectTopK(queries, tf.transpose(c1, [0, 2, 1]), tf.transpose(c2, [0, 2, 1]), plan));
      const got = await expectNoLeaks(() => {
        const packed = select();
        const data = packed.dataSync().slice();
        packed.dispose();
        return data;
      });
      const want = tf.tidy(() => tfOpsSelection(queries, c1, c2, k).dataSync().slice());
      expect(got, `seed ${rng.seed}`).toEqual(want);
      tf.dispose([queries, c1, c2]);
    });
  }
});
