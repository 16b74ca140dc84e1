// Top-k selection over product keys, with no gradient (see untaped.ts).
// Axes: T tokens (Tc in a chunk), h heads, H' key sets (1 or h), S = sqrt(N) sub-keys per table,
// dk key width, k results, R = Tc * h rows, M candidate pairs per row.
import * as tf from '@tensorflow/tfjs-core';
import { leadingRow, leadingRows } from './leading-rows.js';

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

/**
 * Selects, for each (token, head), the k full keys with the largest `q . [C1_a ; C2_b]`.
 * Returns float32 [3, T, h, k] holding score, a and b (see PACKED_*), each sorted by score
 * descending; a and b are exact in float32 because S <= 46340 < 2^24. One tensor, because a
 * customGrad returns one. `subKeys1T`/`subKeys2T` are the tables transposed to [H', dk, S] so that
 * every product is a plain matMul (no transposeB, which is slow on wasm without backend fixes).
 */
export function selectTopK(queries: tf.Tensor3D, subKeys1T: tf.Tensor3D, subKeys2T: tf.Tensor3D, plan: SelectionPlan): tf.Tensor4D {
  const { tokens, heads, k, chunkTokens } = plan;
  if (tokens === 0) return tf.zeros([3, 0, heads, k]);
  // Batched matMul with batch > 1 is about 40x slower than 2-D matMul on wasm, so per-head tables
  // are split once into 2-D matrices and multiplied one head at a time.
  const tables1 = Array.from({ length: subKeys1T.shape[0] }, (_, i) => leadingRow(subKeys1T, i) as tf.Tensor2D);
  const tables2 = Array.from({ length: subKeys2T.shape[0] }, (_, i) => leadingRow(subKeys2T, i) as tf.Tensor2D);
  const pairs = candidatePairs(k);
  const pairFirst = tf.tensor1d(pairs.first, 'int32');
  const pairSecond = tf.tensor1d(pairs.second, 'int32');
  const chunks: tf.Tensor4D[] = [];
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      chunks.push(
        tf.tidy(() => {
          const chunk = size === tokens ? queries : leadingRows(queries, t0, size);
          return selectChunk(chunk, tables1, tables2, pairFirst, pairSecond, plan);
        }),
      );
    }
    return chunks.length === 1 ? chunks[0]! : tf.concat(chunks, 1);
  } finally {
    if (chunks.length > 1) tf.dispose(chunks);
    tf.dispose([...tables1, ...tables2, pairFirst, pairSecond]);
  }
}

interface HalfTopK {
  /** [R, k] best sub-key scores, descending. */
  values: tf.Tensor2D;
  /** [R, k] their sub-key indices in [0, S). */
  indices: tf.Tensor2D;
}

/** [3, Tc, h, k] for one chunk of queries [Tc, h, 2dk]. */
function selectChunk(
  queries: tf.Tensor3D,
  tables1: tf.Tensor2D[],
  tables2: tf.Tensor2D[],
  pairFirst: tf.Tensor1D,
  pairSecond: tf.Tensor1D,
  plan: SelectionPlan,
): tf.Tensor4D {
  const [tc, heads] = queries.shape;
  const { dimKey, k } = plan;
  const shared = tables1.length === 1;
  // One transpose makes every (half, head) block of queries a leading row. Shared keys:
  // [2, Tc * h, dk], rows token-major. Per-head keys: [2 * h, Tc, dk], rows head-major.
  const split = shared
    ? tf.reshape(tf.transpose(tf.reshape(queries, [tc, heads, 2, dimKey]), [2, 0, 1, 3]), [2, tc * heads, dimKey])
    : tf.reshape(tf.transpose(tf.reshape(queries, [tc, heads, 2, dimKey]), [2, 1, 0, 3]), [2 * heads, tc, dimKey]);
  const half = (which: number, tables: tf.Tensor2D[]): HalfTopK => {
    if (shared) return topKOf(tf.matMul(leadingRow(split, which) as tf.Tensor2D, tables[0]!), k);
    const perHead = tables.map((table, head) => topKOf(tf.matMul(leadingRow(split, which * heads + head) as tf.Tensor2D, table), k));
    return {
      values: tf.concat(perHead.map((p) => p.values)),
      indices: tf.concat(perHead.map((p) => p.indices)),
    };
  };
  const packed = combineHalves(half(0, tables1), half(1, tables2), pairFirst, pairSecond, k);
  return shared
    ? tf.reshape(packed, [3, tc, heads, k])
    : tf.transpose(tf.reshape(packed, [3, heads, tc, k]), [0, 2, 1, 3]);
}

function topKOf(scores: tf.Tensor2D, k: number): HalfTopK {
  const { values, indices } = tf.topk(scores, k, true);
  // The [rows, S] scores are the largest temporary; free them before the next head allocates its own.
  scores.dispose();
  return { values: values as tf.Tensor2D, indices: indices as tf.Tensor2D };
}

/**
 * The top-k of the candidate sums s1_a + s2_b over the rank pairs of `candidatePairs`. Exact: a key
 * of the full top-k has both halves in their half's top-k (otherwise k keys sharing its other half
 * score at least as high), and then its rank pair is a candidate pair. Returns [3, R, k].
 */
function combineHalves(first: HalfTopK, second: HalfTopK, pairFirst: tf.Tensor1D, pairSecond: tf.Tensor1D, k: number): tf.Tensor3D {
  const rows = first.values.shape[0];
  // Pair-major [M, R] so that both gathers pick whole rows (axis 0 is the fast gather on wasm).
  const sums = tf.add(tf.gather(tf.transpose(first.values), pairFirst), tf.gather(tf.transpose(second.values), pairSecond));
  const best = tf.topk(tf.transpose(sums), k, true);
  // Pair p ranks the first half's pairFirst[p]-th and the second half's pairSecond[p]-th best sub-key.
  const rowStart = tf.reshape(tf.range(0, rows * k, k, 'int32'), [rows, 1]);
  const a = tf.gather(tf.reshape(first.indices, [rows * k]), tf.add(tf.gather(pairFirst, best.indices), rowStart));
  const b = tf.gather(tf.reshape(second.indices, [rows * k]), tf.add(tf.gather(pairSecond, best.indices), rowStart));
  return tf.stack([best.values, tf.cast(a, 'float32'), tf.cast(b, 'float32')]) as tf.Tensor3D;
}
