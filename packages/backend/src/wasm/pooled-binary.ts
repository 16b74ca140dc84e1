// Add, Sub and Multiply of float32 tensors on the kernel pool's threads, for the threaded engine.
// Each output element is one IEEE operation on its two inputs (f32x4 lanes and the scalar tail give
// the same bits as the engine's kernel), so splitting the elements over threads changes no bit; only
// a NaN's sign and payload are the machine's choice, as in the engine (WebAssembly leaves them open).
// On the threaded engine, served calls under the pool's threshold run the same kernel on the
// calling thread instead of the engine's (which wakes XNNPACK's pool); on one thread nothing changes.
// Served: two operands of the same shape, or a full operand [.., X] with a row [X] (any leading
// axes of size 1) broadcast along its leading axes, either side; the "row" may also be a block of
// several trailing axes ([.., Y, X] with [Y, X]), read as one row of Y * X; or a full operand
// [.., R, X] with a column [.., R, 1] broadcast along the last axis, either side. Anything else,
// one thread, and other dtypes go to the engine's own kernel.
// Axes: R rows of the full operand (its size / X), X the row width (its last axis).
import * as tf from '@tensorflow/tfjs-core';
import { util } from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { F32, FunctionBuilder, I32, V128 } from '../wasm-emitter/wasm-emitter.js';
import { engineMemory, isSharedMemory } from '../wasm-memory/engine-heap.js';
import { kernelPool, splitRange } from '../wasm-memory/kernel-pool.js';
import { passParts, runCalls } from '../wasm-memory/pooled-pass.js';
import { byteOffset, type KernelArgs, type WasmKernelFix } from './wasm-backend.js';

/**
 * Elements per thread below which a tensor stays on the engine's kernel (a pass of the pool costs
 * a worker's wake-up; measured in the README, "Pooled kernels").
 */
export const POOLED_BINARY_MIN_SIZE = 2 ** 21;

let minSizeOverride: number | undefined;

/**
 * Overrides POOLED_BINARY_MIN_SIZE (0: every served call goes to the pool while it runs; Infinity:
 * every served call runs the kernel on the calling thread); undefined restores it. For benchmarks and tests.
 */
export function setPooledBinaryMinSize(size: number | undefined): void {
  if (size !== undefined && !(size >= 0)) throw new Error(`setPooledBinaryMinSize: size must be >= 0, got ${size}`);
  minSizeOverride = size;
}

type BinaryOp = 'add' | 'sub' | 'mul';

// Opcodes (WebAssembly core spec, binary format; SIMD opcode table): scalar f32 and f32x4 forms.
const SCALAR: Record<BinaryOp, number> = { add: 0x92, sub: 0x93, mul: 0x94 };
const VECTOR: Record<BinaryOp, number> = { add: 0xe4, sub: 0xe5, mul: 0xe6 };
const I32_AND = 0x71;

/**
 * op(a, b, out, rows, rowBytes, aStep, bStep): for each of `rows` rows, out[j] = a[j] op b[j] over
 * rowBytes / 4 floats, then a += aStep, b += bStep (bytes; 0 repeats a broadcast row), out += rowBytes.
 */
function buildBinary(op: BinaryOp): FunctionBuilder {
  const [a, b, out, rows, rowBytes, aStep, bStep] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const row = f.local(I32);
  const j = f.local(I32);
  const vectorEnd = f.local(I32);
  f.get(rowBytes).i32(-16).op(I32_AND).set(vectorEnd);
  f.forLoop(row, rows, 1, () => {
    f.forLoop(j, vectorEnd, 16, () => {
      f.get(out).get(j).add();
      f.get(a).get(j).add().v128Load().get(b).get(j).add().v128Load().simd(VECTOR[op]);
      f.v128Store();
    });
    f.whileBelow(j, rowBytes, 4, () => {
      f.get(out).get(j).add();
      f.get(a).get(j).add().f32Load().get(b).get(j).add().f32Load().op(SCALAR[op]);
      f.f32Store();
    });
    f.increment(a, () => f.get(aStep));
    f.increment(b, () => f.get(bStep));
    f.increment(out, () => f.get(rowBytes));
  });
  return f;
}

/**
 * op_col_a / op_col_b (full, col, out, rows, rowBytes): out[r, j] = col[r] op full[r, j] (col_a)
 * or full[r, j] op col[r] (col_b) for each of `rows` rows of rowBytes / 4 floats: a column [R, 1]
 * broadcast along the last axis.
 */
function buildColumn(op: BinaryOp, colIsA: boolean): FunctionBuilder {
  const [full, col, out, rows, rowBytes] = [0, 1, 2, 3, 4];
  const f = new FunctionBuilder(5);
  const row = f.local(I32);
  const j = f.local(I32);
  const vectorEnd = f.local(I32);
  const sCol = f.local(F32);
  const vCol = f.local(V128);
  f.get(rowBytes).i32(-16).op(I32_AND).set(vectorEnd);
  f.forLoop(row, rows, 1, () => {
    f.get(col).f32Load().set(sCol);
    f.get(sCol).f32x4Splat().set(vCol);
    f.forLoop(j, vectorEnd, 16, () => {
      f.get(out).get(j).add();
      if (colIsA) f.get(vCol).get(full).get(j).add().v128Load();
      else f.get(full).get(j).add().v128Load().get(vCol);
      f.simd(VECTOR[op]).v128Store();
    });
    f.whileBelow(j, rowBytes, 4, () => {
      f.get(out).get(j).add();
      if (colIsA) f.get(sCol).get(full).get(j).add().f32Load();
      else f.get(full).get(j).add().f32Load().get(sCol);
      f.op(SCALAR[op]).f32Store();
    });
    f.increment(full, () => f.get(rowBytes));
    f.increment(col, 4);
    f.increment(out, () => f.get(rowBytes));
  });
  return f;
}

const OPS: readonly BinaryOp[] = ['add', 'sub', 'mul'];
export const POOLED_BINARY_MODULE = {
  key: 'pooled-binary',
  functions: () =>
    OPS.flatMap((op) => [
      { name: op, builder: buildBinary(op) },
      { name: `${op}_col_a`, builder: buildColumn(op, true) },
      { name: `${op}_col_b`, builder: buildColumn(op, false) },
    ]),
};

/** How `a op b` is laid out: same shape, or a row (a block of trailing axes) broadcast along the other operand's leading axes. */
type Layout =
  | { kind: 'same'; size: number }
  | { kind: 'row'; rows: number; width: number; rowIsA: boolean }
  | { kind: 'column'; rows: number; width: number; colIsA: boolean };

/**
 * Whether `block`'s shape, without its leading axes of size 1, is the trailing axes of `full`'s
 * (a row [X], or a block [Y, X] such as an attention mask), and it has no more axes than `full`.
 */
function isTrailingBlockOf(block: number[], full: number[]): boolean {
  if (block.length > full.length) return false;
  let first = 0;
  while (first < block.length && block[first] === 1) first++;
  const kept = block.slice(first);
  // A scalar (or all axes 1) would be a "row" of one element: the engine's kernel serves it.
  return kept.length > 0 && util.arraysEqual(kept, full.slice(full.length - kept.length));
}

/** Whether `col`'s shape (leading axes of size 1 added up to `full`'s rank) is `full`'s with the last axis 1 (> 1 in `full`). */
function isColumnOf(col: number[], full: number[]): boolean {
  if (col.length > full.length || (full[full.length - 1] ?? 1) <= 1) return false;
  const padded = [...new Array<number>(full.length - col.length).fill(1), ...col];
  return padded[padded.length - 1] === 1 && padded.slice(0, -1).every((d, i) => d === full[i]);
}

function layoutOf(a: TensorInfo, b: TensorInfo): Layout | undefined {
  if (util.arraysEqual(a.shape, b.shape)) return { kind: 'same', size: util.sizeFromShape(a.shape) };
  for (const [row, full, rowIsA] of [
    [b, a, false],
    [a, b, true],
  ] as const) {
    const width = util.sizeFromShape(row.shape);
    if (width > 0 && isTrailingBlockOf(row.shape, full.shape)) return { kind: 'row', rows: util.sizeFromShape(full.shape) / width, width, rowIsA };
  }
  for (const [col, full, colIsA] of [
    [b, a, false],
    [a, b, true],
  ] as const) {
    if (isColumnOf(col.shape, full.shape)) {
      const width = full.shape[full.shape.length - 1]!;
      return { kind: 'column', rows: util.sizeFromShape(full.shape) / width, width, colIsA };
    }
  }
  return undefined;
}

function pooledBinary(op: BinaryOp, kernelName: string, original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  if (!original) throw new Error(`wasm has no built-in ${kernelName} kernel to delegate to`);
  return (args) => {
    const { a, b } = args.inputs;
    const { backend } = args;
    const pool = kernelPool();
    const memory = engineMemory(backend);
    // One thread (no pool, or an engine heap the pool cannot share): the engine's kernel, as always.
    if (!pool || !memory || !isSharedMemory(memory) || a!.dtype !== 'float32' || b!.dtype !== 'float32') return original(args) as TensorInfo;
    const layout = layoutOf(a!, b!);
    const size = layout ? (layout.kind === 'same' ? layout.size : layout.rows * layout.width) : 0;
    if (!layout || size === 0) return original(args) as TensorInfo;
    // Under the pool's threshold the kernel runs on this thread: on the threaded engine the engine's
    // own kernel wakes XNNPACK's pool, which costs more than the op (README, "Pooled kernels").
    const parts = passParts(memory, size, minSizeOverride ?? POOLED_BINARY_MIN_SIZE);
    const full = (layout.kind === 'row' && layout.rowIsA) || (layout.kind === 'column' && layout.colIsA) ? b! : a!;
    const out = backend.makeOutput([...full.shape], 'float32');
    const [aAt, bAt, outAt] = [byteOffset(backend, a!), byteOffset(backend, b!), byteOffset(backend, out)];
    let calls: number[][];
    let fn: string = op;
    if (layout.kind === 'column') {
      const rowBytes = 4 * layout.width;
      const [fullAt, colAt] = layout.colIsA ? [bAt, aAt] : [aAt, bAt];
      fn = `${op}_col_${layout.colIsA ? 'a' : 'b'}`;
      calls = splitRange(layout.rows, parts).map(([r0, r1]) => [fullAt + r0 * rowBytes, colAt + 4 * r0, outAt + r0 * rowBytes, r1 - r0, rowBytes]);
    } else if (layout.kind === 'same') {
      // Parts of whole f32x4 vectors (the last one takes the tail).
      calls = splitRange(Math.ceil(layout.size / 4), parts).map(([v0, v1]) => {
        const [e0, e1] = [4 * v0, Math.min(layout.size, 4 * v1)];
        return [aAt + 4 * e0, bAt + 4 * e0, outAt + 4 * e0, 1, 4 * (e1 - e0), 0, 0];
      });
    } else {
      const rowBytes = 4 * layout.width;
      const [aStep, bStep] = layout.rowIsA ? [0, rowBytes] : [rowBytes, 0];
      calls = splitRange(layout.rows, parts).map(([r0, r1]) => [
        aAt + r0 * aStep,
        bAt + r0 * bStep,
        outAt + r0 * rowBytes,
        r1 - r0,
        rowBytes,
        aStep,
        bStep,
      ]);
    }
    try {
      runCalls(memory, POOLED_BINARY_MODULE, fn, calls);
    } catch (err) {
      backend.disposeData(out.dataId);
      throw err;
    }
    return out;
  };
}

const fix = (op: BinaryOp, kernelName: string, name: string): WasmKernelFix => ({
  name,
  kernelName,
  kernelFunc: (original) => pooledBinary(op, kernelName, original),
});

export const addFix = fix('add', tf.Add, 'Add (float32, same shape or a broadcast row: on the kernel pool)');
export const subFix = fix('sub', tf.Sub, 'Sub (float32, same shape or a broadcast row: on the kernel pool)');
export const multiplyFix = fix('mul', tf.Multiply, 'Multiply (float32, same shape or a broadcast row: on the kernel pool)');
