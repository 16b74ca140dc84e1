// Top-k selection over product keys, with no gradient (see untaped.ts).
// Axes: T tokens (Tc in a chunk), h heads, H' key sets (1 or h), n = sqrt(N) sub-keys per half,
// dk key width, k results, Qc = Tc * h queries (token, head) of a chunk, M candidate pairs per query.
import * as tf from '@tensorflow/tfjs-core';
import { leadingRows } from './leading-rows.js';
import { engineHeap, readFloats } from '@peer/backend/wasm';
import { combineHalves, combineScratch, rowTopK, type CombineScratch } from './row-top-k.js';
import { heapRowTopKOnHeap, heapTopKRuns } from './heap-top-k.js';
import { heapCombineHalves, type CombineLayout } from './combine-halves-kernel.js';
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
 * matMul (no transposeB, which is slow on wasm without backend fixes). The sub-key products of a
 * chunk of tokens are one batched tfjs matMul (per group of heads, under SCORE_BLOCK_MAX_BYTES); its
 * rows' top-k and the pair stage are one pass each over all its rows, on the wasm heap where the
 * kernels run (heap-top-k.ts, combine-halves-kernel.ts: few large passes, which the kernel pool's
 * threads share), else JS loops (row-top-k.ts). A device engine keeps all of it in tfjs ops
 * (select-top-k-ops.ts).
 */
export function selectTopK(queries: tf.Tensor3D, subKeys1T: tf.Tensor3D, subKeys2T: tf.Tensor3D, plan: SelectionPlan): tf.Tensor4D {
  // A device engine cannot hand the scores to JS synchronously: everything stays in tfjs ops there.
  if (onDevice() || tensorOpsForced) return selectTopKOps(queries, subKeys1T, subKeys2T, plan);
  const { tokens, heads, k, chunkTokens, dimKey, sqrtN } = plan;
  if (tokens === 0) return tf.zeros([3, 0, heads, k]);
  const shared = subKeys1T.shape[0] === 1;
  // Both halves' tables in one [2H', dk, n] tensor, so that a chunk's products are one batched matMul
  // (per-batch products on wasm, each the 2-D product it replaces: the same bits). Per-head keys are
  // head-major ([h, 2, dk, n]) so that a group of heads is a block of leading rows.
  const tables = shared
    ? tf.concat([subKeys1T, subKeys2T], 0)
    : tf.tidy(() => tf.reshape(tf.stack([subKeys1T, subKeys2T], 1), [2 * heads, dimKey, sqrtN]));
  const stage = heapTopKRuns(sqrtN, k) ? new HeapPairStage(plan) : new JsPairStage(plan);
  try {
    for (let t0 = 0; t0 < tokens; t0 += chunkTokens) {
      const size = Math.min(chunkTokens, tokens - t0);
      tf.tidy(() => {
        const chunk = size === tokens ? queries : leadingRows(queries, t0, size);
        selectChunk(chunk, tables as tf.Tensor3D, shared, plan, stage, t0 * heads);
      });
    }
    return stage.result();
  } finally {
    stage.dispose();
    tables.dispose();
  }
}

/** The top-k of each row of a block of sub-key scores, and the pair stage, into the packed selection. */
interface PairStage {
  /** Selects from `scores` ([B, R, n]: the block's rows, both halves) the rows `layout` names. */
  select(scores: tf.Tensor, layout: CombineLayout): void;
  /** The packed selection [3, T, h, k] (the caller owns it). */
  result(): tf.Tensor4D;
  /** Frees what the stage holds (not a returned result). */
  dispose(): void;
}

/** The kernels on the wasm heap: the selection is written in place into a heap tensor. */
class HeapPairStage implements PairStage {
  private readonly packed: tf.Tensor;
  private readonly pairs: tf.Tensor;
  private taken = false;

  constructor(private readonly plan: SelectionPlan) {
    const { tokens, heads, k } = plan;
    const ranks = candidatePairs(k);
    this.pairs = tf.tensor1d([...ranks.first, ...ranks.second], 'int32');
    this.packed = engineHeap()!.output([3, tokens, heads, k], 'float32');
  }

  select(scores: tf.Tensor, layout: CombineLayout): void {
    const { sqrtN, k } = this.plan;
    const top = heapRowTopKOnHeap(scores, scores.size / sqrtN, sqrtN, k);
    if (!top) throw new Error('selectTopK: the heap top-k kernel declined scores it was checked for');
    try {
      heapCombineHalves(top, k, this.pairs, this.packed, layout);
    } finally {
      top.dispose();
    }
  }

  result(): tf.Tensor4D {
    this.taken = true;
    return this.packed as tf.Tensor4D;
  }

  dispose(): void {
    this.pairs.dispose();
    if (!this.taken) this.packed.dispose();
  }
}

/** JS loops (row-top-k.ts) over a copy of the scores, into a JS array. */
class JsPairStage implements PairStage {
  private readonly packed: Float32Array;
  private readonly pairFirst: Int32Array;
  private readonly pairSecond: Int32Array;
  private readonly scratch: CombineScratch;
  private all = { values: new Float32Array(0), indices: new Int32Array(0) };

  constructor(private readonly plan: SelectionPlan) {
    const { tokens, heads, k } = plan;
    const pairs = candidatePairs(k);
    this.pairFirst = Int32Array.from(pairs.first);
    this.pairSecond = Int32Array.from(pairs.second);
    this.packed = new Float32Array(3 * tokens * heads * k);
    this.scratch = combineScratch(k);
  }

  select(scores: tf.Tensor, layout: CombineLayout): void {
    const { sqrtN, k } = this.plan;
    const rows = scores.size / sqrtN;
    if (this.all.values.length < rows * k) this.all = { values: new Float32Array(rows * k), indices: new Int32Array(rows * k) };
    const all = this.all;
    rowTopK(readFloats(scores), rows, sqrtN, k, all.values, all.indices);
    const { rows: q, blockTokens, blockRows, secondRows, outBase, outStride } = layout;
    const slot = this.packed.length / 3;
    for (let i = 0; i < q / blockTokens; i++) {
      const first = selectionRows(all, i * blockRows, i * blockRows + blockTokens, k);
      const second = selectionRows(all, i * blockRows + secondRows, i * blockRows + secondRows + blockTokens, k);
      combineHalves(first, second, blockTokens, k, this.pairFirst, this.pairSecond, this.packed, slot, outStride, outBase + i, this.scratch);
    }
  }

  result(): tf.Tensor4D {
    const { tokens, heads, k } = this.plan;
    return tf.tensor4d(this.packed, [3, tokens, heads, k]);
  }

  dispose(): void {}
}

/**
 * Bytes of sub-key scores one batched product of a chunk may hold (per-head keys: heads are taken
 * in groups under it); the scores are the selection's largest temporary.
 */
export const SCORE_BLOCK_MAX_BYTES = 2 ** 25;

let scoreBlockMaxBytes = SCORE_BLOCK_MAX_BYTES;

/** Tests only: another limit for the score block (undefined: SCORE_BLOCK_MAX_BYTES). */
export function setScoreBlockMaxBytes(bytes: number | undefined): void {
  scoreBlockMaxBytes = bytes ?? SCORE_BLOCK_MAX_BYTES;
}

/** Rows [r0, r1) of a selection (k entries per row), without a copy. */
function selectionRows(all: { values: Float32Array; indices: Int32Array }, r0: number, r1: number, k: number): { values: Float32Array; indices: Int32Array } {
  return { values: all.values.subarray(r0 * k, r1 * k), indices: all.indices.subarray(r0 * k, r1 * k) };
}

/** The sub-key scores `queries @ tables` of a block of rows, selected by `stage` as `layout` says. */
function selectBlock(queries: tf.Tensor, tables: tf.Tensor, stage: PairStage, layout: CombineLayout): void {
  const scores = tf.matMul(queries as tf.Tensor3D, tables as tf.Tensor3D);
  try {
    stage.select(scores, layout);
  } finally {
    scores.dispose();
  }
}

/**
 * Selects one chunk of queries [Tc, h, 2dk] into the stage's packed selection, starting at row
 * `rowOffset` of the flattened [T * h] rows.
 */
function selectChunk(queries: tf.Tensor3D, tables: tf.Tensor3D, shared: boolean, plan: SelectionPlan, stage: PairStage, rowOffset: number): void {
  const [tc, heads] = queries.shape;
  const { dimKey, sqrtN } = plan;
  const perHalf = tf.reshape(queries, [tc, heads, 2, dimKey]);
  if (shared) {
    // [2, Qc, dk] x [2, dk, n]: both halves' scores for every (token, head) row, token-major.
    const rows = tc * heads;
    const split = tf.reshape(tf.transpose(perHalf, [2, 0, 1, 3]), [2, rows, dimKey]);
    selectBlock(split, tables, stage, { rows, blockTokens: rows, blockRows: 2 * rows, secondRows: rows, outBase: rowOffset, outStride: 1 });
    return;
  }
  // [2h, Tc, dk] head-major (batch 2 * head + half) x [2h, dk, n], a group of heads at a time: row t
  // of a head's block is token t of that head.
  const split = tf.reshape(tf.transpose(perHalf, [1, 2, 0, 3]), [2 * heads, tc, dimKey]);
  const group = Math.max(1, Math.min(heads, Math.floor(scoreBlockMaxBytes / (2 * tc * sqrtN * 4))));
  for (let h0 = 0; h0 < heads; h0 += group) {
    const g = Math.min(group, heads - h0);
    tf.tidy(() => {
      const q = g === heads ? split : leadingRows(split, 2 * h0, 2 * g);
      const t = g === heads ? tables : leadingRows(tables, 2 * h0, 2 * g);
      selectBlock(q, t, stage, { rows: g * tc, blockTokens: tc, blockRows: 2 * tc, secondRows: tc, outBase: rowOffset + h0, outStride: heads });
    });
  }
}
