// The candidate-pair stage of the selection (row-top-k.ts's `combineHalves`) as a WebAssembly
// kernel on the wasm engine's heap: it reads the two halves' top-k where the row top-k kernel wrote
// them (heap-top-k.ts) and writes the packed selection [3, T, h, k] in place, bit for bit what
// `combineHalves` writes. Rows are independent, so a pass is split over the kernel pool's threads.
// Axes: Q rows (token, head) of a pass, Tc tokens of a chunk, k results, M candidate pairs.
//
// Why: in JS the pair stage ran on the calling thread while the pool's workers waited, and it was
// the largest serial piece of the selection on 2 threads (product-keys README, "Threads").
//
// Row q of a pass is head block i = q / Tc, token t = q % Tc. Its first half's top-k is row
// i * blockRows + t of the top-k tensor, its second half's the row `secondRows` further, and it is
// written to row outBase + t * outStride + i of the packed selection. Per-head keys: blockRows =
// 2 Tc (a head's two halves are consecutive blocks of Tc rows), secondRows = Tc, outStride = h.
// Shared keys: Tc = Q (one block), secondRows = Q, outStride = 1.
import type * as tf from '@tensorflow/tfjs-core';
import { F32, FunctionBuilder, I32, Op, engineHeap, runPass, type KernelModule } from '@peer/backend/wasm';
import { offerDescending } from './descending-insert.js';

/**
 * combine_pairs(values, indices, q0, q1, tc, blockRows, secondRows, k, pairs, pairCount, packed,
 * slotBytes, outBase, outStride): rows [q0, q1) of a pass (see the file comment). `values` and
 * `indices` are the byte offsets of the top-k values and int32 columns ([rows, k] each), `pairs` of
 * the pair ranks (pairCount first-half ranks, then pairCount second-half ranks), `packed` of the
 * packed selection, whose three slots are `slotBytes` apart.
 */
function buildCombinePairs(): FunctionBuilder {
  const [values, indices, q0, q1, tc, blockRows, secondRows, k, pairs, pairCount, packed, slotBytes, outBase, outStride] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const f = new FunctionBuilder(14);
  const q = f.local(I32);
  const head = f.local(I32);
  const token = f.local(I32);
  const first = f.local(I32); // byte offset of the first half's row, from `values` or `indices`
  const second = f.local(I32); // the same for the second half
  const out = f.local(I32); // byte offset of the output row's values
  const p = f.local(I32);
  const count = f.local(I32);
  const pos = f.local(I32);
  const ok = f.local(I32);
  const at = f.local(I32);
  const j = f.local(I32);
  const kBytes = f.local(I32);
  const x = f.local(F32);

  const firstRank = (pair: number) => f.get(pairs).get(pair).i32(2).shl().add().i32Load();
  const secondRank = (pair: number) => f.get(pairs).get(pairCount).i32(2).shl().add().get(pair).i32(2).shl().add().i32Load();
  /** Pushes the address of entry `slot` (an i32 local) of the output row, in slot `which` (0, 1, 2). */
  const outAt = (which: number, slot: number) => {
    f.get(out).get(slot).i32(2).shl().add();
    if (which > 0) f.get(slotBytes).add();
    if (which > 1) f.get(slotBytes).add();
  };

  const list = { count, k, pos, ok, at, valueAt: (slot: number) => outAt(0, slot), indexAt: (slot: number) => outAt(1, slot) };

  f.get(k).i32(2).shl().set(kBytes);
  f.get(q0).set(q);
  f.whileBelow(q, q1, 1, () => {
    f.get(q).get(tc).divU().set(head);
    f.get(q).get(head).get(tc).mul().op(Op.i32Sub).set(token);
    f.get(head).get(blockRows).mul().get(token).add().get(kBytes).mul().set(first);
    f.get(first).get(secondRows).get(kBytes).mul().add().set(second);
    f.get(packed).get(outBase).get(token).get(outStride).mul().add().get(head).add().get(kBytes).mul().add().set(out);
    // The pairs in order into a descending list, as combineHalves: the pair's number p sits in slot
    // 1 until it is turned into sub-key indices below.
    f.i32(0).set(count);
    f.forLoop(p, pairCount, 1, () => {
      f.get(values).get(first).add();
      firstRank(p);
      f.i32(2).shl().add().f32Load();
      f.get(values).get(second).add();
      secondRank(p);
      f.i32(2).shl().add().f32Load();
      f.f32Add().set(x);
      offerDescending(f, list, x, () => f.get(p));
    });
    // Ranks to sub-key indices, as float32 (exact: n < 2^24).
    f.forLoop(j, k, 1, () => {
      outAt(1, j);
      f.i32Load().set(p);
      outAt(1, j);
      f.get(indices).get(first).add();
      firstRank(p);
      f.i32(2).shl().add().i32Load().op(Op.f32ConvertI32S).f32Store();
      outAt(2, j);
      f.get(indices).get(second).add();
      secondRank(p);
      f.i32(2).shl().add().i32Load().op(Op.f32ConvertI32S).f32Store();
    });
  });
  return f;
}

const COMBINE_MODULE: KernelModule = { key: 'combine_pairs', functions: () => [{ name: 'combine_pairs', builder: buildCombinePairs() }] };
/** The fewest rows in a part of a pass split over the kernel pool (product-keys README, "Threads"). */
export const COMBINE_MIN_ROWS_PER_PART = 64;

/** Where the rows of one combine pass come from and go to (see the file comment). */
export interface CombineLayout {
  /** Rows Q of the pass. */
  rows: number;
  /** Rows per head block (Tc; Q for shared keys). */
  blockTokens: number;
  /** Top-k rows from one head block to the next (2 Tc), and from a first half to its second (Tc; Q for shared keys). */
  blockRows: number;
  secondRows: number;
  /** The packed selection's row of block 0, token 0, and its rows from one token to the next. */
  outBase: number;
  outStride: number;
}

/**
 * `combineHalves` on the heap: from `top` (a heap tensor [2, R, k] of heap-top-k.ts: values, then
 * int32 columns) into `packed` (a heap tensor [3, T, h, k]), with `pairs` the int32 heap tensor of
 * the pair ranks (first ranks, then second ranks). Needs the engine heap (the caller checked
 * `heapTopKRuns`).
 */
export function heapCombineHalves(top: tf.Tensor, k: number, pairs: tf.Tensor, packed: tf.Tensor, layout: CombineLayout): void {
  const heap = engineHeap();
  if (!heap) throw new Error('heapCombineHalves: the wasm engine heap is not available');
  const valuesAt = heap.offsetOf(top);
  const indicesAt = valuesAt + (top.size / 2) * 4;
  const pairsAt = heap.offsetOf(pairs);
  const pairCount = pairs.size / 2;
  const packedAt = heap.offsetOf(packed);
  const slotBytes = (packed.size / 3) * 4;
  const { rows, blockTokens, blockRows, secondRows, outBase, outStride } = layout;
  runPass(heap.memory, COMBINE_MODULE, 'combine_pairs', rows, COMBINE_MIN_ROWS_PER_PART, (q0, q1) => [
    valuesAt, indicesAt, q0, q1, blockTokens, blockRows, secondRows, k, pairsAt, pairCount, packedAt, slotBytes, outBase, outStride,
  ]);
}
