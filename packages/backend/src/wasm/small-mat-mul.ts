// A single-threaded WebAssembly SIMD matMul for small products, run on the wasm engine's heap.
// Why: on the threaded engine every XNNPACK product wakes its thread pool, whose worker costs about
// a millisecond when woken after a gap and then spins before it sleeps again; for products of a
// few million multiply-adds that costs more than the product itself (README, Benchmarks).
// Bit-identity: XNNPACK's f32 GEMM on wasm SIMD computes each output as acc = +0 (the packed zero
// bias), then acc = acc + a[m, k] * b[k, p] for k = 0..K-1 in order, each multiply and add rounded
// (wasm SIMD has no fused multiply-add). This kernel keeps exactly that order per output: it
// vectorizes over p and register-tiles over m and p, never splitting or reordering k, so both give
// the same bits (checked against the engine in small-mat-mul.test.ts).
// Axes: M rows of a and of the output, K the contracted axis, P columns of b and of the output;
// a [M, K], b [K, P], out [M, P], all row-major float32.
import { FunctionBuilder, I32, F32, V128 } from '../wasm-emitter/wasm-emitter.js';
import { engineMemory, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { wasmEngineThreaded } from './threaded-wasm.js';
import type { WasmBackend } from './wasm-backend.js';

/**
 * Products of at most this many multiply-adds (M * K * P) run on this kernel rather than XNNPACK
 * (measured in the README, Benchmarks).
 */
export const SMALL_MAT_MUL_MAX_WORK = 2 ** 25;

/**
 * On the threaded engine, products of at least this many rows of a (M, or Bt * M with a shared b)
 * run on this kernel whatever their size, split over the kernel pool when large
 * (pooled-small-mat-mul.ts): the engine's XNNPACK runs on one thread there (threaded-wasm.ts).
 * Fewer rows with a large b stay on XNNPACK, whose packed copy of a b it has seen pays there.
 */
export const POOLED_MAT_MUL_MIN_ROWS = 64;

/**
 * ... and whose b has at most this many elements (512 KiB). The kernel gathers b's 8-column strips
 * from K rows on every call; XNNPACK reuses a packed copy of a b it has seen. With a large b and few
 * rows of a, reading b sets the time, and XNNPACK was 2-3x faster (README, Benchmarks).
 */
export const SMALL_MAT_MUL_MAX_B = 2 ** 17;

let maxWorkOverride: number | undefined;

/**
 * Overrides SMALL_MAT_MUL_MAX_WORK for both engines and lifts SMALL_MAT_MUL_MAX_B (0: every product
 * on XNNPACK; Infinity: every product on this kernel); undefined restores both. For benchmarks and
 * tests that compare the two routes.
 */
export function setSmallMatMulMaxWork(work: number | undefined): void {
  if (work !== undefined && !(work >= 0)) throw new Error(`setSmallMatMulMaxWork: work must be >= 0, got ${work}`);
  maxWorkOverride = work;
}

interface SmallMatMulExports {
  /**
   * out = a @ b; a, b, out are byte offsets on the heap, m, k, p element counts; scratch is
   * 32 * k bytes of heap the kernel may overwrite.
   */
  mat_mul(a: number, b: number, out: number, m: number, k: number, p: number, scratch: number): void;
  /**
   * mat_mul for each of `count` products listed at `table` (16 bytes each: the u32 byte offsets of
   * a, b and out, then m), in order, all with the same k, p and scratch. One call per pool thread.
   */
  mat_mul_list(table: number, count: number, k: number, p: number, scratch: number): void;
}

// Opcodes the emitter has no helper for (WebAssembly core spec, binary format; SIMD opcode table).
const I32_AND = 0x71;
const I32_SHL = 0x74;
const F32_MUL = 0x94;
const V128_LOAD32_SPLAT = 0x09;

// Output rows per register tile (the rest of M runs one row at a time) and f32x4 vectors per row:
// 4 x 2 vectors keep 8 accumulators, 2 vectors of b and a splat of a in the 16 SIMD registers of x64.
const TILE_ROWS = 4;
const TILE_VECTORS = 2;

/** Bytes of scratch heap `mat_mul` needs for a contracted axis of `k`: one 8-column strip of b. */
export const smallMatMulScratchBytes = (k: number): number => 32 * k;

function buildMatMul(): FunctionBuilder {
  const [a, b, out, m, k, p, scratch] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const rowA = f.local(I32); // bytes per row of a (4K)
  const rowB = f.local(I32); // bytes per row of b and of out (4P)
  const mTiled = f.local(I32); // rows covered by whole 4-row tiles
  const row = f.local(I32);
  const aRow = f.local(I32); // a's first row of the current tile
  const outRow = f.local(I32);
  const col = f.local(I32); // byte offset of the tile's first column
  const colEnd8 = f.local(I32);
  const colEnd4 = f.local(I32);
  const kAt = f.local(I32); // byte offset along a row of a
  const bAt = f.local(I32); // b's element [k, col] (or its copy in the strip)
  const outAt = f.local(I32);
  const stripEnd = f.local(I32);
  const aRows = Array.from({ length: TILE_ROWS }, () => f.local(I32));
  const vAcc = Array.from({ length: TILE_ROWS * TILE_VECTORS }, () => f.local(V128));
  const vB = Array.from({ length: TILE_VECTORS }, () => f.local(V128));
  const vA = f.local(V128);
  const sAcc = Array.from({ length: TILE_ROWS }, () => f.local(F32));
  const sB = f.local(F32);

  f.get(k).i32(2).op(I32_SHL).set(rowA);
  f.get(p).i32(2).op(I32_SHL).set(rowB);
  f.get(m).i32(-TILE_ROWS).op(I32_AND).set(mTiled);
  f.get(rowB).i32(-32).op(I32_AND).set(colEnd8);
  f.get(rowB).i32(-16).op(I32_AND).set(colEnd4);
  f.get(k).i32(5).op(I32_SHL).set(stripEnd);

  /**
   * One tile: `rows` rows of a from aRow, `vectors` f32x4 columns (0: one column) from col, out at
   * outRow + col. `packed`: b's columns come from the strip at scratch (32 bytes per k), else from b.
   */
  const tile = (rows: number, vectors: number, packed: boolean) => {
    const scalar = vectors === 0;
    for (let i = 0; i < rows; i++) {
      if (scalar) f.op(0x43, 0, 0, 0, 0).set(sAcc[i]!); // f32.const +0
      else for (let j = 0; j < vectors; j++) f.v128Zero().set(vAcc[i * TILE_VECTORS + j]!);
      if (i === 0) f.get(aRow).set(aRows[0]!);
      else f.get(aRows[i - 1]!).get(rowA).add().set(aRows[i]!);
    }
    if (packed) f.get(scratch).set(bAt);
    else f.get(b).get(col).add().set(bAt);
    f.forLoop(kAt, rowA, 4, () => {
      if (scalar) f.get(bAt).f32Load().set(sB);
      else for (let j = 0; j < vectors; j++) f.get(bAt).v128Load(16 * j).set(vB[j]!);
      for (let i = 0; i < rows; i++) {
        if (scalar) {
          // acc = acc + a * b: the multiply rounded, then the add, as in each SIMD lane.
          f.get(sAcc[i]!).get(aRows[i]!).get(kAt).add().f32Load().get(sB).op(F32_MUL).f32Add().set(sAcc[i]!);
        } else {
          f.get(aRows[i]!).get(kAt).add().simd(V128_LOAD32_SPLAT, 0x02, 0).set(vA);
          for (let j = 0; j < vectors; j++) {
            const acc = vAcc[i * TILE_VECTORS + j]!;
            f.get(acc).get(vA).get(vB[j]!).f32x4Mul().f32x4Add().set(acc);
          }
        }
      }
      if (packed) f.increment(bAt, 32);
      else f.increment(bAt, () => f.get(rowB));
    });
    f.get(outRow).get(col).add().set(outAt);
    for (let i = 0; i < rows; i++) {
      if (scalar) f.get(outAt).get(sAcc[i]!).f32Store();
      else for (let j = 0; j < vectors; j++) f.get(outAt).get(vAcc[i * TILE_VECTORS + j]!).v128Store(16 * j);
      if (i + 1 < rows) f.increment(outAt, () => f.get(rowB));
    }
  };

  /** One column block for every row: 4-row tiles, then single rows. */
  const allRows = (vectors: number, packed: boolean) => {
    f.get(a).set(aRow);
    f.get(out).set(outRow);
    f.i32(0).set(row);
    f.whileBelow(row, mTiled, TILE_ROWS, () => {
      tile(TILE_ROWS, vectors, packed);
      f.get(aRow).get(rowA).i32(TILE_ROWS).mul().add().set(aRow);
      f.get(outRow).get(rowB).i32(TILE_ROWS).mul().add().set(outRow);
    });
    f.whileBelow(row, m, 1, () => {
      tile(1, vectors, packed);
      f.increment(aRow, () => f.get(rowA));
      f.increment(outRow, () => f.get(rowB));
    });
  };

  // 8-column strips of b, each first copied to scratch (contiguous, 32 bytes per k) and kept in
  // cache for every row tile. Read in place, a strip is K cache lines 4P bytes apart, which for P a
  // power of two fall in a few cache sets and evict one another. Then one 4-column block and single
  // columns, read in place. The copy moves bits only: the products are the same.
  f.i32(0).set(col);
  f.whileBelow(col, colEnd8, 32, () => {
    f.get(b).get(col).add().set(bAt);
    f.forLoop(kAt, stripEnd, 32, () => {
      f.get(scratch).get(kAt).add().get(bAt).v128Load(0).v128Store(0);
      f.get(scratch).get(kAt).add().get(bAt).v128Load(16).v128Store(16);
      f.increment(bAt, () => f.get(rowB));
    });
    allRows(2, true);
  });
  f.whileBelow(col, colEnd4, 16, () => allRows(1, false));
  f.whileBelow(col, rowB, 4, () => allRows(0, false));
  return f;
}

/** Bytes per product in `mat_mul_list`'s table: a, b, out, m as u32. */
export const SMALL_MAT_MUL_LIST_ENTRY_BYTES = 16;

// Function index of mat_mul in the module (the first function; the module imports none).
const MAT_MUL_INDEX = 0;
const CALL = 0x10;

function buildMatMulList(): FunctionBuilder {
  const [table, count, k, p, scratch] = [0, 1, 2, 3, 4];
  const f = new FunctionBuilder(5);
  const at = f.local(I32);
  const end = f.local(I32);
  f.get(table).set(at);
  f.get(count).i32(4).op(I32_SHL).get(table).add().set(end);
  f.whileBelow(at, end, SMALL_MAT_MUL_LIST_ENTRY_BYTES, () => {
    f.get(at).i32Load(0).get(at).i32Load(4).get(at).i32Load(8).get(at).i32Load(12);
    f.get(k).get(p).get(scratch).op(CALL, MAT_MUL_INDEX);
  });
  return f;
}

export const SMALL_MAT_MUL_MODULE = {
  key: 'small-mat-mul',
  functions: () => [
    { name: 'mat_mul', builder: buildMatMul() },
    { name: 'mat_mul_list', builder: buildMatMulList() },
  ],
};

/** The kernel on the engine's heap, or undefined where WebAssembly SIMD or the heap is unavailable. */
export function smallMatMulKernel(backend: WasmBackend): SmallMatMulExports['mat_mul'] | undefined {
  return smallMatMulExports(backend)?.mat_mul;
}

/** Both kernels of the module on the engine's heap, or undefined where they cannot run. */
export function smallMatMulExports(backend: WasmBackend): SmallMatMulExports | undefined {
  const memory = engineMemory(backend);
  if (!memory) return undefined;
  return kernelsOnHeap<SmallMatMulExports>(memory, SMALL_MAT_MUL_MODULE.key, SMALL_MAT_MUL_MODULE.functions) ?? undefined;
}

/**
 * The kernel when a product of `m * k * p` multiply-adds should run on it rather than on XNNPACK
 * (the engine's thread count picks the threshold); undefined otherwise.
 */
export function smallMatMulFor(backend: WasmBackend, m: number, k: number, p: number): SmallMatMulExports['mat_mul'] | undefined {
  if (maxWorkOverride !== undefined) return m * k * p <= maxWorkOverride ? smallMatMulKernel(backend) : undefined;
  if (wasmEngineThreaded() && m >= POOLED_MAT_MUL_MIN_ROWS) return smallMatMulKernel(backend);
  return m * k * p <= SMALL_MAT_MUL_MAX_WORK && k * p <= SMALL_MAT_MUL_MAX_B ? smallMatMulKernel(backend) : undefined;
}
