// Top-k selection over product keys, with no gradient (see untaped.ts).
// Axes: T tokens (Tc in a chunk), h heads, H' key sets (1 or h), S = sqrt(N) sub-keys per table,
// dk key width, kc candidates per half (candidateK), k results, R = Tc * h rows.
import * as tf from '@tensorflow/tfjs-core';

export interface SelectionPlan {
  tokens: number;
  heads: number;
  dimKey: number;
  sqrtN: number;
  /** Results per (token, head). */
  k: number;
  /** Sub-keys kept from each half before the candidate sums. */
  candidateK: number;
  /** Tokens per chunk of the selection. */
  chunkTokens: number;
}

/** Slots on the last axis of the packed selection. */
export const PACKED_SCORE = 0;
export const PACKED_FIRST = 1;
export const PACKED_SECOND = 2;

/**
 * Selects, for each (token, head), the k full keys with the largest `q . [C1_a ; C2_b]`.
 * Returns float32 [T, h, k, 3] holding (score, a, b) sorted by score descending; a and b are exact
 * in float32 because S <= 46340 < 2^24. One tensor, because a customGrad returns one.
 * `subKeys1T`/`subKeys2T` are the tables transposed to [H', dk, S] so that every product is a plain
 * matMul (no transposeB, which is slow on wasm without backend fixes).
 */
export function selectTopK(queries: tf.Tensor3D, subKeys1T: tf.Tensor3D, subKeys2T: tf.Tensor3D, plan: SelectionPlan): tf.Tensor4D {
  const { tokens, heads, k, chunkTokens } = plan;
  if (tokens === 0) return tf.zeros([0, heads, k, 3]);
  // Batched matMul with batch > 1 is about 40x slower than 2-D matMul on wasm, so per-head tables
  // are split once into 2-D matrices and multiplied one head at a time.
  const tables1 = tf.unstack(subKeys1T) as tf.Tensor2D[];
  const tables2 = tf.unstack(subKeys2T) as tf.Tensor2D[];
  const chunks: tf.Tensor4D[] = [];
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      chunks.push(
        tf.tidy(() => {
          const chunk = size === tokens ? queries : tf.slice(queries, [t0, 0, 0], [size, heads, 2 * plan.dimKey]);
          return selectChunk(chunk, tables1, tables2, plan);
        }),
      );
    }
    return chunks.length === 1 ? chunks[0]! : tf.concat(chunks, 0);
  } finally {
    if (chunks.length > 1) tf.dispose(chunks);
    tf.dispose([...tables1, ...tables2]);
  }
}

/** [Tc, h, k, 3] for one chunk of queries [Tc, h, 2dk]. */
function selectChunk(queries: tf.Tensor3D, tables1: tf.Tensor2D[], tables2: tf.Tensor2D[], plan: SelectionPlan): tf.Tensor4D {
  const [tc, heads] = queries.shape;
  const { dimKey, candidateK } = plan;
  const half = (offset: number, tables: tf.Tensor2D[]): { values: tf.Tensor2D; indices: tf.Tensor2D } => {
    if (tables.length === 1) {
      // Shared keys: one [R, dk] x [dk, S] product for all heads.
      const q = tf.reshape(tf.slice(queries, [0, 0, offset], [tc, heads, dimKey]), [tc * heads, dimKey]);
      return topKOf(tf.matMul(q, tables[0]!), candidateK);
    }
    const perHead = tables.map((table, head) => {
      const q = tf.reshape(tf.slice(queries, [0, head, offset], [tc, 1, dimKey]), [tc, dimKey]);
      return topKOf(tf.matMul(q, table), candidateK);
    });
    // Stack on axis 1 so that rows come out token-major: row r = token * h + head.
    return {
      values: tf.reshape(tf.stack(perHead.map((p) => p.values), 1), [tc * heads, candidateK]),
      indices: tf.reshape(tf.stack(perHead.map((p) => p.indices), 1), [tc * heads, candidateK]),
    };
  };
  const first = half(0, tables1);
  const second = half(dimKey, tables2);
  return tf.reshape(combineHalves(first, second, plan), [tc, heads, plan.k, 3]);
}

function topKOf(scores: tf.Tensor2D, k: number): { values: tf.Tensor2D; indices: tf.Tensor2D } {
  const { values, indices } = tf.topk(scores, k, true);
  // The [R, S] scores are the largest temporary; free them before the next half allocates its own.
  scores.dispose();
  return { values: values as tf.Tensor2D, indices: indices as tf.Tensor2D };
}

/**
 * The kc*kc candidate sums s1_a + s2_b per row and their top-k. Exact: any key in the full top-k has
 * both halves in their half's top-k (else kc >= k keys sharing its other half would beat it).
 */
function combineHalves(
  first: { values: tf.Tensor2D; indices: tf.Tensor2D },
  second: { values: tf.Tensor2D; indices: tf.Tensor2D },
  plan: SelectionPlan,
): tf.Tensor3D {
  const rows = first.values.shape[0];
  const kc = plan.candidateK;
  const sums = tf.reshape(
    tf.add(tf.reshape(first.values, [rows, kc, 1]), tf.reshape(second.values, [rows, 1, kc])),
    [rows, kc * kc],
  );
  const best = tf.topk(sums, plan.k, true);
  // Candidate position p = pa * kc + pb; look pa, pb up in each row's top-kc sub-key indices.
  const kcInt = tf.scalar(kc, 'int32');
  const pa = tf.floorDiv(best.indices, kcInt);
  const pb = tf.sub(best.indices, tf.mul(pa, kcInt));
  const rowStart = tf.reshape(tf.range(0, rows * kc, kc, 'int32'), [rows, 1]);
  const a = tf.gather(tf.reshape(first.indices, [rows * kc]), tf.add(pa, rowStart));
  const b = tf.gather(tf.reshape(second.indices, [rows * kc]), tf.add(pb, rowStart));
  return tf.stack([best.values, tf.cast(a, 'float32'), tf.cast(b, 'float32')], 2) as tf.Tensor3D;
}
