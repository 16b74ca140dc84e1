// The backward of the gathered scores in one WebAssembly SIMD pass per half, on its own memory.
// Axes: Q query rows (token, head), k selections per row, dk key width, K table rows (H' * n).
//
// For one half, with id[r, j] the table row of selection j of row r and dy[r, j] its score gradient:
//   dq[r, :]      = sum_j dy[r, j] C[id[r, j], :]
//   dC[id[r, j]] += dy[r, j] q[r, :]                 (rows no selection names stay 0)
//
// Why: in tfjs ops this is a gather of [Q * k, dk] rows, two broadcasting products and two ScatterNd
// per half, a quarter of the PEER benchmark's step; a plain JS loop is about as slow, this
// kernel several times faster (timings in the product-keys README). It runs on the wasm
// engine's heap, reading the saved tensors in place and writing the gradients straight into new
// tensors. It needs wasm SIMD and dk a multiple of 8; the caller falls back to tfjs ops otherwise.
//
// On the kernel pool's threads (@peer/backend/wasm's runPass) a half runs as two passes: dq split over query rows,
// dC split over table rows, where each thread walks every selection in order and takes only those
// naming its rows. So every output row is summed by one thread in the same order as on one thread
// (two tokens that select the same sub-key never race), and the result is that of one thread.
import type * as tf from '@tensorflow/tfjs-core';
import { FunctionBuilder, I32, rowLoop, V128, engineHeap, kernelPool, kernelsOnHeap, passParts, runCalls, splitRange, type EngineHeap, type KernelModule } from '@peer/backend/wasm';

interface ScoreGradExports {
  /** One half: pointers are byte offsets; q and dq rows are `stride` bytes apart. */
  score_grad(rows: number, k: number, q: number, dq: number, stride: number, c: number, dc: number, ids: number, dy: number, dkBytes: number, heads: number, headRows: number): void;
  /** dq of query rows [r0, r1) only; dq, ids and dy point at row r0. */
  score_grad_dq(r0: number, r1: number, k: number, dq: number, stride: number, c: number, ids: number, dy: number, dkBytes: number, heads: number, headRows: number): void;
  /** dC of table rows [lo, hi) only, from every selection of all `rows` query rows. */
  score_grad_dc(rows: number, k: number, q: number, stride: number, dc: number, ids: number, dy: number, dkBytes: number, heads: number, headRows: number, lo: number, hi: number): void;
}

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format).
const IF = 0x04;
const END = 0x0b;
const VOID = 0x40;
const I32_SUB = 0x6b;
const I32_REM_U = 0x70;

function buildScoreGrad(): FunctionBuilder {
  const [rows, k, q, dq, stride, c, dc, ids, dy, dkBytes, heads, headRows] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const f = new FunctionBuilder(12);
  const r = f.local(I32);
  const headOffset = f.local(I32);
  const j = f.local(I32);
  const i = f.local(I32);
  const keyRow = f.local(I32);
  const gradRow = f.local(I32);
  const w = f.local(V128);
  f.forLoop(r, rows, 1, () => {
    // Per-head tables: row r is head r mod h, whose sub-keys start at table row (r mod h) * n.
    f.get(r).get(heads).op(I32_REM_U).get(headRows).mul().set(headOffset);
    f.forLoop(j, k, 1, () => {
      f.get(dy).f32Load().f32x4Splat().set(w);
      f.get(ids).i32Load().get(headOffset).add().get(dkBytes).mul().set(keyRow);
      f.get(dc).get(keyRow).add().set(gradRow);
      f.get(c).get(keyRow).add().set(keyRow);
      f.increment(dy, 4).increment(ids, 4);
      rowLoop(f, i, dkBytes, (offset) => {
        // dq[r] += w * C[id]
        f.get(dq).get(i).add();
        f.get(dq).get(i).add().v128Load(offset);
        f.get(w).get(keyRow).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
        f.v128Store(offset);
        // dC[id] += w * q[r]
        f.get(gradRow).get(i).add();
        f.get(gradRow).get(i).add().v128Load(offset);
        f.get(w).get(q).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
        f.v128Store(offset);
      });
    });
    f.increment(q, () => f.get(stride)).increment(dq, () => f.get(stride));
  });
  return f;
}

/** The dq half of `score_grad` for query rows [r0, r1) (see ScoreGradExports). */
function buildScoreGradDq(): FunctionBuilder {
  const [r0, r1, k, dq, stride, c, ids, dy, dkBytes, heads, headRows] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const f = new FunctionBuilder(11);
  const headOffset = f.local(I32);
  const j = f.local(I32);
  const i = f.local(I32);
  const keyRow = f.local(I32);
  const w = f.local(V128);
  f.whileBelow(r0, r1, 1, () => {
    f.get(r0).get(heads).op(I32_REM_U).get(headRows).mul().set(headOffset);
    f.forLoop(j, k, 1, () => {
      f.get(dy).f32Load().f32x4Splat().set(w);
      f.get(ids).i32Load().get(headOffset).add().get(dkBytes).mul().get(c).add().set(keyRow);
      f.increment(dy, 4).increment(ids, 4);
      rowLoop(f, i, dkBytes, (offset) => {
        f.get(dq).get(i).add();
        f.get(dq).get(i).add().v128Load(offset);
        f.get(w).get(keyRow).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
        f.v128Store(offset);
      });
    });
    f.increment(dq, () => f.get(stride));
  });
  return f;
}

/** The dC half of `score_grad` for table rows [lo, hi) (see ScoreGradExports). */
function buildScoreGradDc(): FunctionBuilder {
  const [rows, k, q, stride, dc, ids, dy, dkBytes, heads, headRows, lo, hi] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const f = new FunctionBuilder(12);
  const r = f.local(I32);
  const headOffset = f.local(I32);
  const j = f.local(I32);
  const i = f.local(I32);
  const id = f.local(I32);
  const span = f.local(I32);
  const gradRow = f.local(I32);
  const w = f.local(V128);
  f.get(hi).get(lo).op(I32_SUB).set(span);
  f.forLoop(r, rows, 1, () => {
    f.get(r).get(heads).op(I32_REM_U).get(headRows).mul().set(headOffset);
    f.forLoop(j, k, 1, () => {
      f.get(ids).i32Load().get(headOffset).add().set(id);
      // lo <= id < hi, as one unsigned compare.
      f.get(id).get(lo).op(I32_SUB).get(span).ltU().op(IF, VOID);
      f.get(dy).f32Load().f32x4Splat().set(w);
      f.get(dc).get(id).get(dkBytes).mul().add().set(gradRow);
      rowLoop(f, i, dkBytes, (offset) => {
        f.get(gradRow).get(i).add();
        f.get(gradRow).get(i).add().v128Load(offset);
        f.get(w).get(q).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
        f.v128Store(offset);
      });
      f.op(END);
      f.increment(dy, 4).increment(ids, 4);
    });
    f.increment(q, () => f.get(stride));
  });
  return f;
}

const SCORE_GRAD_MODULE: KernelModule = {
  key: 'score_grad',
  functions: () => [
    { name: 'score_grad', builder: buildScoreGrad() },
    { name: 'score_grad_dq', builder: buildScoreGradDq() },
    { name: 'score_grad_dc', builder: buildScoreGradDc() },
  ],
};
/** Passes of fewer query rows than this per thread run on one thread (product-keys README, "Threads"). */
export const SCORE_GRAD_MIN_ROWS_PER_THREAD = 32;

let disabled = false;

/** Tests only: route the backward through tfjs ops even where the kernel fits. */
export function disableScoreGradKernel(value: boolean): void {
  disabled = value;
}

function scoreGradKernel(heap: EngineHeap): ScoreGradExports | null {
  return kernelsOnHeap<ScoreGradExports>(heap.memory, SCORE_GRAD_MODULE.key, SCORE_GRAD_MODULE.functions);
}

/** Whether `scoreGradientsOnHeap` can run keys of width `dimKey` here. */
export function scoreGradKernelFits(dimKey: number): boolean {
  if (disabled || dimKey % 8 !== 0) return false;
  const heap = engineHeap();
  return heap !== undefined && scoreGradKernel(heap) !== null;
}

export interface ScoreGradInputs {
  /** Queries [T, h, 2 * dk]: the first dk features of a head meet table 1, the last dk table 2. */
  queries: tf.Tensor;
  /** The two sub-key tables [H', n, dk]. */
  subKeys: [tf.Tensor, tf.Tensor];
  /** Sub-key indices of the selections, int32 [T, h, k] per half (within the head's key set). */
  ids: [tf.Tensor, tf.Tensor];
  /** Heads h, and sub-keys per key set n when each head has its own (else 0: one shared set). */
  heads: number;
  headRows: number;
  /** Score gradients [T, h, k]. */
  dy: tf.Tensor;
  k: number;
  dimKey: number;
}

/** The query gradient (shaped as the queries) and both sub-key gradients (shaped as the tables). */
export function scoreGradientsOnHeap(x: ScoreGradInputs): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const heap = engineHeap();
  const kern = heap && scoreGradKernel(heap);
  if (!heap || !kern) throw new Error('scoreGradientsOnHeap: needs the wasm engine with WebAssembly SIMD');
  const { k, dimKey } = x;
  const rows = x.queries.size / (2 * dimKey);
  const dq = heap.output(x.queries.shape, 'float32');
  const d1 = heap.output(x.subKeys[0].shape, 'float32');
  const d2 = heap.output(x.subKeys[1].shape, 'float32');
  // Views after the last allocation (an allocation may grow the heap and detach older views).
  for (const t of [dq, d1, d2]) new Float32Array(heap.memory.buffer, heap.offsetOf(t), t.size).fill(0);
  const dkBytes = dimKey * 4;
  const q = heap.offsetOf(x.queries);
  const dqAt = heap.offsetOf(dq);
  const grads = [d1, d2];
  const dyAt = heap.offsetOf(x.dy);
  const stride = 2 * dkBytes;
  const parts = passParts(heap.memory, rows, SCORE_GRAD_MIN_ROWS_PER_THREAD);
  // A dC part walks every selection: one part per thread, not more (each extra part is a full walk).
  const tableParts = Math.min(parts, kernelPool()?.threads ?? 1);
  for (const half of [0, 1]) {
    const [qAt, dqHalf, cAt, dcAt, idsAt] = [q + half * dkBytes, dqAt + half * dkBytes, heap.offsetOf(x.subKeys[half]!), heap.offsetOf(grads[half]!), heap.offsetOf(x.ids[half]!)];
    if (parts <= 1) {
      kern.score_grad(rows, k, qAt, dqHalf, stride, cAt, dcAt, idsAt, dyAt, dkBytes, x.heads, x.headRows);
      continue;
    }
    const rowCalls = splitRange(rows, parts).map(([r0, r1]) => [r0, r1, k, dqHalf + r0 * stride, stride, cAt, idsAt + r0 * k * 4, dyAt + r0 * k * 4, dkBytes, x.heads, x.headRows]);
    runCalls(heap.memory, SCORE_GRAD_MODULE, 'score_grad_dq', rowCalls);
    const tableRows = x.subKeys[half]!.size / dimKey;
    const tableCalls = splitRange(tableRows, tableParts).map(([lo, hi]) => [rows, k, qAt, stride, dcAt, idsAt, dyAt, dkBytes, x.heads, x.headRows, lo, hi]);
    runCalls(heap.memory, SCORE_GRAD_MODULE, 'score_grad_dc', tableCalls);
  }
  return [dq, d1, d2];
}
