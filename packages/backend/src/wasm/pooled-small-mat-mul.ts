// Products on our kernel (small-mat-mul.ts) split over the kernel pool's threads: on the threaded
// engine this is where every large product runs (the engine's XNNPACK keeps one thread there,
// threaded-wasm.ts), and the per-batch path's lists of products (the attention products of a
// transformer: Bt products of a few million multiply-adds each). A list is split into contiguous
// groups of whole products; a single product into blocks of rows, each block a product of its own.
// The kernel's bits do not depend on which rows a call covers (each output is summed over k in
// order, whatever tile it falls in), so the result equals one thread's bit for bit. Every part gets
// its own scratch block: the kernel overwrites its scratch.
// Axes: Bt products (batches), M rows of a product, K contracted axis, P columns.
import { engineMemory } from '../wasm-memory/engine-heap.js';
import { kernelPool, splitRange } from '../wasm-memory/kernel-pool.js';
import { passParts } from '../wasm-memory/pooled-pass.js';
import { SMALL_MAT_MUL_LIST_ENTRY_BYTES, SMALL_MAT_MUL_MODULE, smallMatMulScratchBytes } from './small-mat-mul.js';
import { byteOffset, type WasmBackend } from './wasm-backend.js';

/**
 * A list of products is split over the pool only with at least this many multiply-adds per thread
 * (handing a pass to the pool costs a worker's wake-up; measured in the README, "Pooled kernels").
 */
export const POOLED_MAT_MUL_MIN_WORK = 2 ** 23;

let minWorkOverride: number | undefined;

/**
 * Overrides POOLED_MAT_MUL_MIN_WORK (0: every list of two or more products goes to the pool while
 * it runs; Infinity: none does); undefined restores it. For benchmarks and tests.
 */
export function setPooledMatMulMinWork(work: number | undefined): void {
  if (work !== undefined && !(work >= 0)) throw new Error(`setPooledMatMulMinWork: work must be >= 0, got ${work}`);
  minWorkOverride = work;
}

/** One product: byte offsets of a [M, K], b [K, P] and out [M, P] on the engine's heap, and M. */
export interface SmallProduct {
  a: number;
  b: number;
  out: number;
  rows: number;
}

/**
 * How many pool threads a list of small products of `work` multiply-adds in all should run on
 * (1: run it on this thread). More than 1 only while the kernel pool runs and the engine's heap is
 * shared with it (the threaded engine), so one thread never touches the pool.
 */
export function pooledMatMulParts(backend: WasmBackend, work: number): number {
  const memory = engineMemory(backend);
  return memory ? passParts(memory, work, minWorkOverride ?? POOLED_MAT_MUL_MIN_WORK) : 1;
}

/**
 * Rows per block of a single product split over the pool: a block of a about 128 KiB (so that it
 * stays in a core's cache while the kernel sweeps b's column strips over it), and at least 64 rows
 * (each block copies every strip of b once, so fewer rows would spend more on copies).
 */
export function pooledBlockRows(k: number): number {
  return Math.max(64, 4 * Math.floor(2 ** 17 / (16 * k)));
}

/**
 * A single product cut into `parts` products of consecutive rows (multiples of the kernel's 4-row
 * tile, except the last), so that one product can be shared by the threads.
 */
export function splitRows(product: SmallProduct, parts: number, k: number, p: number): SmallProduct[] {
  const tiles = Math.ceil(product.rows / 4);
  return splitRange(tiles, parts).map(([t0, t1]) => {
    const r0 = 4 * t0;
    const r1 = Math.min(product.rows, 4 * t1);
    return { a: product.a + 4 * r0 * k, b: product.b, out: product.out + 4 * r0 * p, rows: r1 - r0 };
  });
}

/**
 * Runs every product of `products` (all [*, K] x [K, P]) on the kernel pool in `parts` contiguous
 * groups, one group per thread (a single product is first split by rows). The caller has checked
 * `pooledMatMulParts` and that the small kernel serves these products.
 */
export function runSmallMatMulsOnPool(backend: WasmBackend, products: readonly SmallProduct[], k: number, p: number, parts: number): void {
  const pool = kernelPool();
  const memory = engineMemory(backend);
  if (!pool || !memory) throw new Error('runSmallMatMulsOnPool: the kernel pool is not running on the engine heap');
  const single = products[0]!;
  const list = products.length === 1 ? splitRows(single, Math.max(parts, Math.ceil(single.rows / pooledBlockRows(k))), k, p) : products;
  const groups = splitRange(list.length, parts);
  const scratchBytes = smallMatMulScratchBytes(k);
  // Allocations may grow the heap: the offsets stay valid, views of the old buffer do not.
  const table = backend.makeOutput([(list.length * SMALL_MAT_MUL_LIST_ENTRY_BYTES) / 4], 'int32');
  const scratch = backend.makeOutput([(groups.length * scratchBytes) / 4], 'float32');
  try {
    const tableAt = byteOffset(backend, table);
    const scratchAt = byteOffset(backend, scratch);
    const entries = new Uint32Array(memory.buffer, tableAt, list.length * 4);
    list.forEach((q, i) => entries.set([q.a, q.b, q.out, q.rows], 4 * i));
    const calls = groups.map(([g0, g1], part) => [tableAt + g0 * SMALL_MAT_MUL_LIST_ENTRY_BYTES, g1 - g0, k, p, scratchAt + part * scratchBytes]);
    pool.run(memory, SMALL_MAT_MUL_MODULE.key, SMALL_MAT_MUL_MODULE.functions, 'mat_mul_list', calls);
  } finally {
    backend.disposeData(table.dataId);
    backend.disposeData(scratch.dataId);
  }
}
