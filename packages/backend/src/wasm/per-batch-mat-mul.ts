// Batched matMul on wasm as one fast 2-D product per batch. The built-in kernel runs XNNPACK only
// for a single batch without transposes; anything else goes to a naive C loop, over an order of
// magnitude slower than the same products done as 2-D matMuls (README, Benchmarks).
// No data is copied: for each batch the operands' and the output's memory are registered with the
// C side as views (an id, a size, a heap offset), the engine's own C BatchMatMul runs on them with
// batch 1, and the views are forgotten again. The views never enter the JS data map, so nothing can
// free their memory through them; forgetting a view on the C side also deletes the XNNPACK operator
// cached on it (the operator holds a packed copy of b, valid only for that view's data).
// Axes: Bt output batches (flattened), M rows, K contracted axis, P columns; a [..., M, K] and b [..., K, P]
// in plain layout (the transpose-first kernels copy transposed operands before calling this).
import { broadcast_util, util } from '@tensorflow/tfjs-core';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { pooledMatMulParts, runSmallMatMulsOnPool, type SmallProduct } from './pooled-small-mat-mul.js';
import { smallMatMulFor, smallMatMulScratchBytes } from './small-mat-mul.js';
import { byteOffset, type WasmBackend, type WasmModule } from './wasm-backend.js';

/**
 * Per-batch products win when (M - 4) * K * P >= this, fitted on the project machine (cost model in
 * the README): the built-in loop pays per multiply-add; a per-batch product pays a fixed cost, plus
 * a cost per element of b (XNNPACK packs b into its own layout), plus a much smaller one per
 * multiply-add. With one shared b, all batches are a single product (M is Bt * M).
 */
export const PER_BATCH_MIN_WORK = 2048;

type CBatchMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  outId: number,
) => void;

const wrapped = new WeakMap<WasmModule, CBatchMatMul>();

/** The engine's exported C BatchMatMul (the same entry its own kernel wraps in its setup). */
function cBatchMatMul(backend: WasmBackend): CBatchMatMul {
  let f = wrapped.get(backend.wasm);
  if (!f) {
    const args = ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number'];
    f = backend.wasm.cwrap('BatchMatMul', null, args) as unknown as CBatchMatMul;
    wrapped.set(backend.wasm, f);
  }
  return f;
}

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** Output batch shape and the flattened batch counts; throws if the batch axes do not broadcast. */
export function batchShapes(aShape: number[], bShape: number[]): { outBatch: number[]; batches: number } {
  const outBatch = broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  return { outBatch, batches: util.sizeFromShape(outBatch) };
}

/** Whether a product of plain-layout operands with these shapes should take the per-batch path. */
export function prefersPerBatch(aShape: number[], bShape: number[]): boolean {
  const { batches } = batchShapes(aShape, bShape);
  if (batches <= 1) return false;
  const m = aShape[aShape.length - 2]!;
  const k = aShape[aShape.length - 1]!;
  const n = bShape[bShape.length - 1]!;
  const rows = util.sizeFromShape(bShape.slice(0, -2)) === 1 ? batches * m : m;
  return (rows - 4) * k * n >= PER_BATCH_MIN_WORK;
}

/**
 * `a @ b` for float32 operands in plain layout, batch axes broadcast as in NumPy (a size-1 axis on
 * either side, including axes that both sides broadcast, which tfjs 4.22's own kernels get wrong).
 */
export function matMulPerBatch(a: TensorInfo, b: TensorInfo, backend: WasmBackend): TensorInfo {
  const ar = a.shape.length;
  const br = b.shape.length;
  if (ar < 2 || br < 2) throw new Error(`matMul: operands need rank >= 2, got shapes [${a.shape}] and [${b.shape}]`);
  const [m, k] = [a.shape[ar - 2]!, a.shape[ar - 1]!];
  const [kb, n] = [b.shape[br - 2]!, b.shape[br - 1]!];
  if (k !== kb) throw new Error(`matMul: inner dimensions differ: a [${a.shape}] and b [${b.shape}]`);
  const { outBatch, batches } = batchShapes(a.shape, b.shape);
  const out = backend.makeOutput([...outBatch, m, n], 'float32');
  if (batches * m * n === 0) return out;
  // Heap views only after the allocation above (it may grow the heap and detach older views).
  const outBase = byteOffset(backend, out);
  if (k === 0) {
    new Float32Array(backend.wasm.HEAPU8.buffer, outBase, batches * m * n).fill(0);
    return out;
  }
  const sharedB = util.sizeFromShape(b.shape.slice(0, -2)) === 1;
  // Products on our kernel (the same bits as XNNPACK's): on this thread, or split over the kernel
  // pool when it runs and the work is large (pooled-small-mat-mul.ts: batches in groups, a single
  // product in blocks of rows).
  const small = smallMatMulFor(backend, sharedB ? batches * m : m, k, n);
  const parts = small ? pooledMatMulParts(backend, batches * m * k * n) : 1;
  const scratch = small && parts === 1 ? backend.makeOutput([smallMatMulScratchBytes(k) / 4], 'float32') : undefined;
  const aBase = byteOffset(backend, a);
  const bBase = byteOffset(backend, b);
  const scratchBase = scratch ? byteOffset(backend, scratch) : 0;
  const product = cBatchMatMul(backend);
  const { tfjs } = backend.wasm;
  const views: number[] = [];
  const view = (offset: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    tfjs.registerTensor(id, size, offset);
    views.push(id);
    return id;
  };
  const run = ({ a: aAt, b: bAt, out: outAt, rows }: SmallProduct) => {
    if (small) return small(aAt, bAt, outAt, rows, k, n, scratchBase);
    const aId = view(aAt, rows * k);
    const bId = view(bAt, k * n);
    const outId = view(outAt, rows * n);
    product(aId, shapeBytes([1, rows, k]), 3, bId, shapeBytes([1, k, n]), 3, false, false, outId);
    while (views.length) tfjs.disposeData(views.pop()!);
  };
  try {
    // One shared b: a's batches are consecutive rows of a single [Bt * M, K] matrix.
    const products = sharedB ? [{ a: aBase, b: bBase, out: outBase, rows: batches * m }] : batchProducts(a.shape, b.shape, outBatch, aBase, bBase, outBase);
    if (parts > 1) runSmallMatMulsOnPool(backend, products, k, n, parts);
    else for (const p of products) run(p);
    return out;
  } catch (err) {
    while (views.length) tfjs.disposeData(views.pop()!);
    backend.disposeData(out.dataId);
    throw err;
  } finally {
    if (scratch) backend.disposeData(scratch.dataId);
  }
}

/** The per-batch products of `a @ b` (plain layout, broadcast batch axes), in output batch order. */
function batchProducts(aShape: number[], bShape: number[], outBatch: number[], aBase: number, bBase: number, outBase: number): SmallProduct[] {
  const [m, k] = aShape.slice(-2) as [number, number];
  const n = bShape[bShape.length - 1]!;
  // Element strides of each operand's batches along the output batch axes (0 where broadcast).
  const rank = outBatch.length;
  const batchStrides = (shape: number[], matrixSize: number): number[] => {
    const batch = shape.slice(0, -2);
    const padded = [...new Array<number>(rank - batch.length).fill(1), ...batch];
    const strides = new Array<number>(rank);
    let s = matrixSize;
    for (let d = rank - 1; d >= 0; d--) {
      strides[d] = padded[d] === 1 ? 0 : s;
      s *= padded[d]!;
    }
    return strides;
  };
  const aStrides = batchStrides(aShape, m * k);
  const bStrides = batchStrides(bShape, k * n);
  const batches = util.sizeFromShape(outBatch);
  const index = new Array<number>(rank).fill(0);
  const products: SmallProduct[] = [];
  let aAt = 0;
  let bAt = 0;
  for (let t = 0; t < batches; t++) {
    products.push({ a: aBase + 4 * aAt, b: bBase + 4 * bAt, out: outBase + 4 * t * m * n, rows: m });
    // Advance the output batch index like an odometer, tracking each operand's element offset.
    for (let d = rank - 1; d >= 0; d--) {
      aAt += aStrides[d]!;
      bAt += bStrides[d]!;
      if (++index[d]! < outBatch[d]!) break;
      aAt -= aStrides[d]! * outBatch[d]!;
      bAt -= bStrides[d]! * outBatch[d]!;
      index[d] = 0;
    }
  }
  return products;
}
