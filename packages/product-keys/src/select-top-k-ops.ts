// Top-k selection over product keys in tfjs ops only: the path of device engines (webgpu), where
// nothing may be read back synchronously. Same result layout and order as selectTopK's JS path.
// Axes: T tokens (Tc in a chunk), h heads, H' key sets (1 or h), n = sqrt(N) sub-keys per half,
// dk key width, k results, Qc = Tc * h queries (token, head) of a chunk, M candidate pairs per query.
import * as tf from '@tensorflow/tfjs-core';
import { leadingRows } from './leading-rows.js';
import { candidatePairs, type SelectionPlan } from './select-top-k.js';

/**
 * selectTopK as tfjs ops: per half the sub-key scores (one matMul, batched over heads with per-head
 * keys) and tf.topk; the candidate sums of the rank pairs that can reach the top-k
 * (`candidatePairs`) and a final tf.topk; then the sub-key indices of the winning pairs by gathers.
 * Returns float32 [3, T, h, k] (score, a, b; see PACKED_*). Sums are float32 adds, as in the JS
 * path, and tf.topk breaks ties by lower index, i.e. in candidatePairs order.
 */
export function selectTopKOps(queries: tf.Tensor3D, subKeys1T: tf.Tensor3D, subKeys2T: tf.Tensor3D, plan: SelectionPlan): tf.Tensor4D {
  const { tokens, heads, k, chunkTokens } = plan;
  if (tokens === 0) return tf.zeros([3, 0, heads, k]);
  const pairs = candidatePairs(k);
  const pairFirst = tf.tensor1d(pairs.first, 'int32');
  const pairSecond = tf.tensor1d(pairs.second, 'int32');
  const parts: tf.Tensor4D[] = [];
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      parts.push(
        tf.tidy(() => {
          const chunk = size === tokens ? queries : leadingRows(queries, t0, size);
          return selectChunkOps(chunk, subKeys1T, subKeys2T, pairFirst, pairSecond, plan);
        }),
      );
    }
    return parts.length === 1 ? parts[0]! : (tf.concat(parts, 1) as tf.Tensor4D);
  } finally {
    if (parts.length > 1) tf.dispose(parts);
    tf.dispose([pairFirst, pairSecond]);
  }
}

function selectChunkOps(
  queries: tf.Tensor3D,
  subKeys1T: tf.Tensor3D,
  subKeys2T: tf.Tensor3D,
  pairFirst: tf.Tensor1D,
  pairSecond: tf.Tensor1D,
  plan: SelectionPlan,
): tf.Tensor4D {
  const [tc, heads] = queries.shape;
  const { dimKey, sqrtN, k } = plan;
  const rows = tc * heads;
  const shared = subKeys1T.shape[0] === 1;
  // [2, Tc, h, dk]: each half of the queries a leading row.
  const halves = tf.transpose(tf.reshape(queries, [tc, heads, 2, dimKey]), [2, 0, 1, 3]);
  const [q1, q2] = tf.unstack(halves) as [tf.Tensor3D, tf.Tensor3D];
  const halfTopK = (q: tf.Tensor3D, tableT: tf.Tensor3D): { values: tf.Tensor2D; indices: tf.Tensor2D } => {
    // Scores [Qc, n], rows token-major (t * h + head).
    const scores = shared
      ? tf.matMul(tf.reshape(q, [rows, dimKey]), tf.reshape(tableT, [dimKey, sqrtN]))
      : tf.reshape(tf.transpose(tf.matMul(tf.transpose(q, [1, 0, 2]), tableT), [1, 0, 2]), [rows, sqrtN]);
    return tf.topk(scores as tf.Tensor2D, k) as { values: tf.Tensor2D; indices: tf.Tensor2D };
  };
  const first = halfTopK(q1, subKeys1T);
  const second = halfTopK(q2, subKeys2T);
  // Candidate sums [Qc, M] and the best k of them.
  const sums = tf.add(tf.gather(first.values, pairFirst, 1), tf.gather(second.values, pairSecond, 1)) as tf.Tensor2D;
  const best = tf.topk(sums, k);
  // Sub-key index of each winner: row r's rank-j sub-key sits at r * k + j of the flattened [Qc, k].
  const rowStart = tf.reshape(tf.mul(tf.range(0, rows, 1, 'int32'), tf.scalar(k, 'int32')), [rows, 1]);
  const pick = (half: { indices: tf.Tensor2D }, pairRank: tf.Tensor1D): tf.Tensor =>
    tf.cast(tf.gather(tf.reshape(half.indices, [rows * k]), tf.add(rowStart, tf.gather(pairRank, best.indices))), 'float32');
  return tf.reshape(tf.stack([best.values, pick(first, pairFirst), pick(second, pairSecond)]), [3, tc, heads, k]) as tf.Tensor4D;
}
