// Differentiable scores of selected keys: score[t, h, j] = q1[t, h] . C1[h', a] + q2[t, h] . C2[h', b]
// with (a, b) = the j-th selection of (t, h) and h' = h (per-head keys) or 0 (shared keys).
// Axes: T tokens (Tb in a chunk), h heads, H' key sets, n = sqrt(N) sub-keys per half, dk key
// width, k results, Qb = Tb * h queries (token, head) of a chunk.
import * as tf from '@tensorflow/tfjs-core';
import { leadingRow, leadingRows } from './leading-rows.js';
import { scoreGradientsOnHeap, scoreGradKernelFits } from './score-grad-kernel.js';

export interface ScorePlan {
  heads: number;
  dimKey: number;
  sqrtN: number;
  k: number;
  /** Tokens per chunk of the backward pass. */
  chunkTokens: number;
}

/**
 * Returns `values` (the scores the selection computed) as a tensor whose gradient flows to
 * `queries`, `subKeys1` and `subKeys2`. The backward gathers only the selected sub-key rows, so
 * its cost is O(T * h * k * dk), independent of n; the sub-key gradients are dense tables with
 * only the selected rows non-zero.
 */
export function gatheredScores(
  queries: tf.Tensor3D,
  subKeys1: tf.Tensor3D,
  subKeys2: tf.Tensor3D,
  values: tf.Tensor3D,
  first: tf.Tensor3D,
  second: tf.Tensor3D,
  plan: ScorePlan,
): tf.Tensor3D {
  const scores = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [q, c1, c2, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([q, c1, c2, first, second]);
    return {
      value: tf.clone(values),
      gradFunc: (dy: tf.Tensor3D, saved: tf.Tensor[]) => {
        const [sq, sc1, sc2, sa, sb] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        return scoreGradients({ dy, queries: sq, subKeys1: sc1, subKeys2: sc2, first: sa, second: sb }, plan);
      },
    };
  });
  return scores(queries, subKeys1, subKeys2) as tf.Tensor3D;
}

/** What the backward of the scores reads: their gradient, the saved inputs and the selections. */
interface SavedScores {
  dy: tf.Tensor3D;
  queries: tf.Tensor3D;
  subKeys1: tf.Tensor3D;
  subKeys2: tf.Tensor3D;
  first: tf.Tensor3D;
  second: tf.Tensor3D;
}

function scoreGradients(saved: SavedScores, plan: ScorePlan): tf.Tensor[] {
  if (scoreGradKernelFits(plan.dimKey)) return kernelScoreGradients(saved, plan);
  const { dy, queries, subKeys1, subKeys2, first, second } = saved;
  const { heads, dimKey, sqrtN, k, chunkTokens } = plan;
  const tokens = queries.shape[0];
  const sets = subKeys1.shape[0];
  const tableRows = sets * sqrtN;
  // Rows of the flattened [H' * n, dk] tables: per-head keys live at head * n + a.
  const [rows1, rows2] = tf.tidy(() => {
    if (sets === 1) return [tf.clone(first), tf.clone(second)];
    const offsets = tf.reshape(tf.range(0, heads * sqrtN, sqrtN, 'int32'), [1, heads, 1]);
    return [tf.add(first, offsets), tf.add(second, offsets)];
  });
  const table1 = tf.reshape(subKeys1, [tableRows, dimKey]) as tf.Tensor2D;
  const table2 = tf.reshape(subKeys2, [tableRows, dimKey]) as tf.Tensor2D;
  const queryGrads: tf.Tensor[] = [];
  let grad1: tf.Tensor2D | undefined;
  let grad2: tf.Tensor2D | undefined;
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      const r = size * heads;
      const [dq, d1, d2] = tf.tidy(() => {
        const cut = <X extends tf.Tensor>(x: X): X => (size === tokens ? x : leadingRows(x, t0, size));
        const dyFlat = tf.reshape(cut(dy), [r * k, 1]);
        // Both reductions are scatter-adds (ScatterNd: C++ on wasm, sums repeats on every backend);
        // batched matMuls and sums over a middle axis are slow on wasm. Selection i belongs to row i / k.
        const ownRow = tf.reshape(tf.floorDiv(tf.range(0, r * k, 1, 'int32'), tf.scalar(k, 'int32')), [r * k, 1]);
        // [2, Qb, dk]: each half of the queries a leading row.
        const halves = tf.reshape(tf.transpose(tf.reshape(cut(queries), [r, 2, dimKey]), [1, 0, 2]), [2, r, dimKey]);
        // The [Qb * k, dk] temporaries are the largest of the backward pass: free each when used.
        const half = (which: number, table: tf.Tensor2D, rows: tf.Tensor3D): [tf.Tensor, tf.Tensor2D] => {
          const rowIds = tf.reshape(cut(rows), [r * k, 1]);
          // d score / d q = the selected sub-key, summed over the row's k selections.
          const keys = tf.gather(table, tf.reshape(rowIds, [r * k]));
          const weighted = tf.mul(keys, dyFlat);
          keys.dispose();
          const dq = tf.scatterND(ownRow, weighted, [r, dimKey]);
          weighted.dispose();
          // d score / d C[row] = q, summed over every selection of that row.
          const qRows = tf.reshape(leadingRow(halves, which), [r, 1, dimKey]);
          const updates = tf.reshape(tf.mul(tf.reshape(dyFlat, [r, k, 1]), qRows), [r * k, dimKey]);
          const dTable = tf.scatterND(rowIds, updates, [tableRows, dimKey]) as tf.Tensor2D;
          updates.dispose();
          return [dq, dTable];
        };
        const [dq1, dTable1] = half(0, table1, rows1);
        const [dq2, dTable2] = half(1, table2, rows2);
        // [2, Qb, dk] -> [Tb, h, 2 * dk]
        const dq = tf.reshape(tf.transpose(tf.stack([dq1, dq2]), [1, 0, 2]), [size, heads, 2 * dimKey]);
        return [dq, dTable1, dTable2] as [tf.Tensor, tf.Tensor2D, tf.Tensor2D];
      });
      queryGrads.push(dq);
      grad1 = accumulate(grad1, d1);
      grad2 = accumulate(grad2, d2);
    }
    const dQueries = queryGrads.length === 0 ? tf.zerosLike(queries) : queryGrads.length === 1 ? queryGrads[0]! : tf.concat(queryGrads, 0);
    return [
      dQueries,
      grad1 ? tf.reshape(grad1, subKeys1.shape) : tf.zerosLike(subKeys1),
      grad2 ? tf.reshape(grad2, subKeys2.shape) : tf.zerosLike(subKeys2),
    ];
  } finally {
    if (queryGrads.length > 1) tf.dispose(queryGrads);
    tf.dispose([rows1, rows2, table1, table2]);
  }
}

/** scoreGradients in the SIMD kernel (score-grad-kernel.ts): no [Q * k, dk] temporaries, so no chunks. */
function kernelScoreGradients({ dy, queries, subKeys1, subKeys2, first, second }: SavedScores, plan: ScorePlan): tf.Tensor[] {
  const { heads, dimKey, sqrtN, k } = plan;
  const headRows = subKeys1.shape[0] !== 1 ? sqrtN : 0;
  return scoreGradientsOnHeap({ queries, subKeys: [subKeys1, subKeys2], ids: [first, second], dy, k, dimKey, heads, headRows });
}

function accumulate(total: tf.Tensor2D | undefined, part: tf.Tensor2D): tf.Tensor2D {
  if (!total) return part;
  const sum = tf.add(total, part) as tf.Tensor2D;
  tf.dispose([total, part]);
  return sum;
}
