// Top-k selection over product keys, with no gradient (see untaped.ts).
// Axes: T tokens (Tc in a chunk), h heads, H' key sets (1 or h), n = sqrt(N) sub-keys per half,
// dk key width, k results, Qc = Tc * h queries (token, head) of a chunk, M candidate pairs per query.
import * as tf from '@tensorflow/tfjs-core';
import { leadingRow, leadingRows } from './leading-rows.js';
import { readFloats } from '@peer/backend/wasm';
import { combineHalves, combineScratch, rowTopK, type CombineScratch } from './row-top-k.js';
import { heapRowTopK } from './heap-top-k.js';
import { onDevice } from '@peer/backend';
import { selectTopKOps } from './select-top-k-ops.js';

export interface SelectionPlan {
  tokens: number;
  heads: number;
  dimKey: number;
  sqrtN: number;
  /** Results per (token, head). */
  k: number;
  /** Tokens per chunk. */
  chunkTokens: number;
}

/** Slots on axis 0 of the packed selection. */
export const PACKED_SCORE = 0;
export const PACKED_FIRST = 1;
export const PACKED_SECOND = 2;

/**
 * The rank pairs (i, j) - i-th best first-half sub-key with j-th best second-half sub-key - that
 * can be in a top-k: the (i + 1) * (j + 1) pairs (i' <= i, j' <= j) all score at least as high, so
 * a pair with (i + 1) * (j + 1) > k never needs to be looked at. About k * ln(k) + 0.58 k pairs
 * (50 for k = 16) instead of the k^2 of the plain product.
 */
export function candidatePairs(k: number): { first: number[]; second: number[] } {
  const first: number[] = [];
  const second: number[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; (i + 1) * (j + 1) <= k; j++) {
      first.push(i);
      second.push(j);
    }
  }
  return { first, second };
}

let tensorOpsForced = false;

/** Tests only: select with the device engines' tfjs-ops path (select-top-k-ops.ts) on any engine. */
export function forceTensorTopK(value: boolean): void {
  tensorOpsForced = value;
}

/**
 * Selects, for each (token, head), the k full keys with the largest `q . [C1_a ; C2_b]`.
 * Returns float32 [3, T, h, k] holding score, a and b (see PACKED_*), each sorted by score
 * descending (equal sums in `candidatePairs` order, as tf.topk over the pair sums gives); a and b
 * are exact in float32 because n <= 46340 < 2^24. One tensor, because a customGrad returns one.
 * `subKeys1T`/`subKeys2T` are the tables transposed to [H', dk, n] so that every product is a plain
 * matMul (no transposeB, which is slow on wasm without backend fixes). The sub-key products are
 * tfjs matMuls; both selections run in JS over the products in place (see row-top-k.ts), except on
 * a device engine, where all of it stays in tfjs ops (select-top-k-ops.ts).
 */
export function selectTopK(queries: tf.Tensor3D, subKeys1T: tf.Tensor3D, subKeys2T: tf.Tensor3D, plan: SelectionPlan): tf.Tensor4D {
  // A device engine cannot hand the scores to JS synchronously: everything stays in tfjs ops there.
  if (onDevice() || tensorOpsForced) return selectTopKOps(queries, subKeys1T, subKeys2T, plan);
  const { tokens, heads, k, chunkTokens } = plan;
  if (tokens === 0) return tf.zeros([3, 0, heads, k]);
  // Batched matMul with batch > 1 is far slower than 2-D matMul on wasm (README), so per-head tables
  // are split once into 2-D matrices and multiplied one head at a time.
  const tables1 = Array.from({ length: subKeys1T.shape[0] }, (_, i) => leadingRow(subKeys1T, i) as tf.Tensor2D);
  const tables2 = Array.from({ length: subKeys2T.shape[0] }, (_, i) => leadingRow(subKeys2T, i) as tf.Tensor2D);
  const pairs = candidatePairs(k);
  const pairFirst = Int32Array.from(pairs.first);
  const pairSecond = Int32Array.from(pairs.second);
  const packed = new Float32Array(3 * tokens * heads * k);
  const slot = tokens * heads * k;
  const scratch = combineScratch(k);
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      tf.tidy(() => {
        const chunk = size === tokens ? queries : leadingRows(queries, t0, size);
        selectChunk(chunk, tables1, tables2, pairFirst, pairSecond, plan, packed, slot, t0 * heads, scratch);
      });
    }
    return tf.tensor4d(packed, [3, tokens, heads, k]);
  } finally {
    tf.dispose([...tables1, ...tables2]);
  }
}

/**
 * Writes the selections of one chunk of queries [Tc, h, 2dk] to packed [3, T, h, k] (slot stride
 * `slot`), starting at row `rowOffset` of the flattened [T * h] rows.
 */
function selectChunk(
  queries: tf.Tensor3D,
  tables1: tf.Tensor2D[],
  tables2: tf.Tensor2D[],
  pairFirst: Int32Array,
  pairSecond: Int32Array,
  plan: SelectionPlan,
  packed: Float32Array,
  slot: number,
  rowOffset: number,
  scratch: CombineScratch,
): void {
  const [tc, heads] = queries.shape;
  const { dimKey, sqrtN, k } = plan;
  const shared = tables1.length === 1;
  // One transpose makes every (half, head) block of queries a leading row. Shared keys:
  // [2, Tc * h, dk], rows token-major. Per-head keys: [2 * h, Tc, dk], rows head-major.
  const split = shared
    ? tf.reshape(tf.transpose(tf.reshape(queries, [tc, heads, 2, dimKey]), [2, 0, 1, 3]), [2, tc * heads, dimKey])
    : tf.reshape(tf.transpose(tf.reshape(queries, [tc, heads, 2, dimKey]), [2, 1, 0, 3]), [2 * heads, tc, dimKey]);
  const rows = shared ? tc * heads : tc;
  const first = { values: new Float32Array(rows * k), indices: new Int32Array(rows * k) };
  const second = { values: new Float32Array(rows * k), indices: new Int32Array(rows * k) };
  const halfTopK = (row: number, table: tf.Tensor2D, into: { values: Float32Array; indices: Int32Array }) => {
    const scores = tf.matMul(leadingRow(split, row) as tf.Tensor2D, table);
    // In place on the wasm heap where the SIMD kernel runs; else the JS loop on a heap view, read
    // before anything else allocates. The [rows, n] scores are the largest temporary, so each is
    // freed before the next product allocates its own.
    if (!heapRowTopK(scores, rows, sqrtN, k, into.values, into.indices)) rowTopK(readFloats(scores), rows, sqrtN, k, into.values, into.indices);
    scores.dispose();
  };
  for (let head = 0; head < tables1.length; head++) {
    halfTopK(shared ? 0 : head, tables1[head]!, first);
    halfTopK(shared ? 1 : heads + head, tables2[head]!, second);
    // Shared keys: row r is flattened row r of the chunk. Per-head keys: row t is token t of head `head`.
    if (shared) combineHalves(first, second, rows, k, pairFirst, pairSecond, packed, slot, 1, rowOffset, scratch);
    else combineHalves(first, second, rows, k, pairFirst, pairSecond, packed, slot, heads, rowOffset + head, scratch);
  }
}
