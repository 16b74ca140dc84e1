// Row-wise top-k of small k over long rows, and the candidate-pair stage, in plain JS loops.
// Axes: Q rows (queries: token, head), W row width (n = sqrt(N) sub-keys, or M candidate pairs),
// k results per row.
//
// Why JS: tfjs's wasm TopK costs about as much as the sub-key GEMM that feeds it (it sorts or
// partially sorts every row), while a threshold scan touches each score once and inserts only the
// few that beat the current k-th best - about k * ln(W / k) of W on random rows.
/**
 * Inserts (value, index) into the descending list out[base .. base + count) and returns the new
 * count (at most k; a full list drops its last entry). Entries equal to `value` stay ahead of it:
 * callers offer indices in increasing order, so among equal values the lower index comes first,
 * as in tf.topk.
 */
function insert(values: Float32Array, indices: Int32Array, base: number, count: number, k: number, value: number, index: number): number {
  let pos = count < k ? count++ : k - 1;
  while (pos > 0 && values[base + pos - 1]! < value) {
    values[base + pos] = values[base + pos - 1]!;
    indices[base + pos] = indices[base + pos - 1]!;
    pos--;
  }
  values[base + pos] = value;
  indices[base + pos] = index;
  return count;
}

/**
 * For each of `rows` rows of `scores` ([Q, W] row-major), the k largest values, descending, with
 * their column indices; equal values in increasing column order (tf.topk's order), into outValues /
 * outIndices [Q, k]. Scores must not be NaN.
 * Cost O(W) per row plus O(k) per insertion; worst case (ascending rows) O(W * k).
 */
export function rowTopK(
  scores: Float32Array,
  rows: number,
  width: number,
  k: number,
  outValues: Float32Array,
  outIndices: Int32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const src = r * width;
    const base = r * k;
    let count = 0;
    for (let c = 0; c < k; c++) count = insert(outValues, outIndices, base, count, k, scores[src + c]!, c);
    // The k-th best so far: a later score must beat it strictly (an equal one has a higher index).
    let floor = outValues[base + k - 1]!;
    for (let c = k; c < width; c++) {
      const value = scores[src + c]!;
      if (value > floor) {
        insert(outValues, outIndices, base, k, k, value, c);
        floor = outValues[base + k - 1]!;
      }
    }
  }
}

/** Scratch for `combineHalves`, reused across calls of one selection. */
export interface CombineScratch {
  values: Float32Array;
  pairs: Int32Array;
}

export function combineScratch(k: number): CombineScratch {
  return { values: new Float32Array(k), pairs: new Int32Array(k) };
}

/**
 * For each row r, the top-k of the candidate sums first[r, pairFirst[p]] + second[r, pairSecond[p]]
 * (float32 sums, as tf.add computes them) over the pairs p, ties in increasing p; writes the score
 * and the two sub-key indices firstIndices[r, pairFirst[p]], secondIndices[r, pairSecond[p]] of
 * each result to packed [3, *, k] (slot stride `slot`) at row r * outStride + outOffset.
 */
export function combineHalves(
  first: { values: Float32Array; indices: Int32Array },
  second: { values: Float32Array; indices: Int32Array },
  rows: number,
  k: number,
  pairFirst: Int32Array,
  pairSecond: Int32Array,
  packed: Float32Array,
  slot: number,
  outStride: number,
  outOffset: number,
  scratch: CombineScratch,
): void {
  const pairs = pairFirst.length;
  const { values, pairs: best } = scratch;
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    let count = 0;
    for (let p = 0; p < pairs; p++) {
      const sum = Math.fround(first.values[base + pairFirst[p]!]! + second.values[base + pairSecond[p]!]!);
      if (count < k || sum > values[k - 1]!) count = insert(values, best, 0, count, k, sum, p);
    }
    const out = (r * outStride + outOffset) * k;
    for (let j = 0; j < k; j++) {
      const p = best[j]!;
      packed[out + j] = values[j]!;
      packed[slot + out + j] = first.indices[base + pairFirst[p]!]!;
      packed[2 * slot + out + j] = second.indices[base + pairSecond[p]!]!;
    }
  }
}
