// Column kernels of the query BatchNorm over a [T, F] matrix: WebAssembly SIMD functions (built at
// load time with @peer/backend's emitter) in their own small growable memory, managed as an arena,
// and plain JS loops of the same semantics where the kernels cannot run (no wasm SIMD, F not a
// multiple of 8).
//
// Axes: T tokens (rows), F query features (columns), row-major; vectors are [F].
//
//   colSum:     out[j] = sum_t a[t, j]
//   colSumProd: out[j] = sum_t a[t, j] b[t, j]
//   affine:     out[t, j] = (a[t, j] - sub[j]) mul[j] + add[j]          (out may be a)
//   bnGrad:     out[t, j] = (dy[t, j] - p[j] - xhat[t, j] q[j]) c[j]
//
// Why kernels: on wasm, tfjs reduces over axis 0 by transposing first, and the BatchNorm's dozen
// element-wise passes over [T, F] as tfjs ops cost several times more (product-keys README).
//
// While the kernel pool runs, the memory is shared with its workers and a large pass is split into
// column ranges (multiples of 8 columns) over its threads: every output column is computed by one
// thread in the same order as on one, so results do not depend on the thread count. Rows are `stride`
// floats apart so that a call can cover a range of the columns.
import { FunctionBuilder, I32, isSharedMemory, kernelPool, kernelsOnHeap, passParts, rowLoop, runCalls, splitRange, wasmApi, type KernelModule, type WasmMemory } from '@peer/backend/wasm';

const PAGE = 65536;

/** Wasm pages the memory may grow to (4 GiB, the wasm32 limit). */
const MAX_PAGES = 65536;

/** Each kernel's last two arguments are (f, stride): f columns per row, rows `stride` floats apart. */
type ColumnKernel = 'col_sum' | 'col_sum_prod' | 'affine' | 'bn_grad';
type ColumnKernelExports = Record<ColumnKernel, (...args: number[]) => void>;

/** out = sum over rows of a (or of a * b when `product`). */
function buildColSum(product: boolean): FunctionBuilder {
  const params = product ? 6 : 5;
  // (a, [b,] out, T, F, stride)
  const a = 0;
  const b = 1;
  const out = product ? 2 : 1;
  const tCount = out + 1;
  const fCount = out + 2;
  const stride = out + 3;
  const f = new FunctionBuilder(params);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  const strideBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  f.get(stride).i32(2).shl().set(strideBytes);
  rowLoop(f, j, fBytes, (offset) => {
    f.get(out).get(j).add().v128Zero().v128Store(offset);
  });
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(out).get(j).add().v128Load(offset);
      f.get(a).get(j).add().v128Load(offset);
      if (product) f.get(b).get(j).add().v128Load(offset).f32x4Mul();
      f.f32x4Add().v128Store(offset);
    });
    f.increment(a, () => f.get(strideBytes));
    if (product) f.increment(b, () => f.get(strideBytes));
  });
  return f;
}

/** (a, sub, mul, add, out, T, F, stride): out[t, j] = (a[t, j] - sub[j]) * mul[j] + add[j]. */
function buildAffine(): FunctionBuilder {
  const [a, sub, mul, add, out, tCount, fCount, stride] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f = new FunctionBuilder(8);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  const strideBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  f.get(stride).i32(2).shl().set(strideBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(a).get(j).add().v128Load(offset);
      f.get(sub).get(j).add().v128Load(offset);
      f.f32x4Sub();
      f.get(mul).get(j).add().v128Load(offset);
      f.f32x4Mul();
      f.get(add).get(j).add().v128Load(offset);
      f.f32x4Add().v128Store(offset);
    });
    f.increment(a, () => f.get(strideBytes));
    f.increment(out, () => f.get(strideBytes));
  });
  return f;
}

/** (dy, xhat, p, q, c, out, T, F, stride): out[t, j] = (dy[t, j] - p[j] - xhat[t, j] * q[j]) * c[j]. */
function buildBnGrad(): FunctionBuilder {
  const [dy, xhat, p, q, c, out, tCount, fCount, stride] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const f = new FunctionBuilder(9);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  const strideBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  f.get(stride).i32(2).shl().set(strideBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(dy).get(j).add().v128Load(offset);
      f.get(p).get(j).add().v128Load(offset);
      f.f32x4Sub();
      f.get(xhat).get(j).add().v128Load(offset);
      f.get(q).get(j).add().v128Load(offset);
      f.f32x4Mul().f32x4Sub();
      f.get(c).get(j).add().v128Load(offset);
      f.f32x4Mul().v128Store(offset);
    });
    f.increment(dy, () => f.get(strideBytes));
    f.increment(xhat, () => f.get(strideBytes));
    f.increment(out, () => f.get(strideBytes));
  });
  return f;
}

const COLUMN_MODULE: KernelModule = {
  key: 'query-norm/columns',
  functions: () => [
    { name: 'col_sum', builder: buildColSum(false) },
    { name: 'col_sum_prod', builder: buildColSum(true) },
    { name: 'affine', builder: buildAffine() },
    { name: 'bn_grad', builder: buildBnGrad() },
  ],
};
/** Passes over fewer [T, F] elements than this per thread run on one thread (product-keys README, "Threads"). */
export const QUERY_NORM_MIN_ELEMENTS_PER_THREAD = 1 << 18;
/** The same for the column sums, which read the matrix and write only [F]: one thread is faster for longer. */
export const COLUMN_SUM_MIN_ELEMENTS_PER_THREAD = 1 << 20;

/** A memory for the kernels: shared with the kernel pool's workers while the pool runs. */
function newMemory(): WasmMemory | undefined {
  if (!wasmApi) return undefined;
  try {
    return new wasmApi.Memory({ initial: 1, maximum: MAX_PAGES, ...(kernelPool() ? { shared: true } : {}) });
  } catch {
    return undefined;
  }
}

/** A region of kernel memory: byte offset and float count. */
export interface Region {
  offset: number;
  length: number;
}

/**
 * One instance of the column kernels with its own growable memory, managed as an arena: `reset`,
 * then `alloc` regions, fill them through `view`, run kernels. Views are re-created after every
 * allocation (growing the memory detaches earlier views). `onHeap` runs the same kernels on the wasm
 * engine's heap instead, on regions that are tensors there.
 */
export class QueryNormKernels {
  /** True when the wasm SIMD kernels run; false means the JS fallback. */
  readonly simd: boolean;
  private memory: WasmMemory | undefined;
  private fallbackBuffer = new ArrayBuffer(0);
  private top = 0;

  /** True when the regions are tensors on the wasm engine's heap (`onHeap`): nothing is allocated here. */
  readonly onEngineHeap: boolean;

  /** `heap`: see `onHeap`. */
  constructor(options: { forceFallback?: boolean; heap?: WasmMemory } = {}) {
    this.onEngineHeap = options.heap !== undefined;
    this.memory = options.heap ?? (options.forceFallback ? undefined : newMemory());
    if (this.memory && !this.kernels()) this.memory = undefined;
    this.simd = this.memory !== undefined;
  }

  /**
   * The kernels on the wasm engine's heap memory (`engineHeap().memory`), for regions that are
   * tensors there: no copies in or out, and `alloc` refuses. Undefined where the SIMD kernels cannot
   * run on it.
   */
  static onHeap(heap: WasmMemory): QueryNormKernels | undefined {
    const k = new QueryNormKernels({ heap });
    return k.simd ? k : undefined;
  }

  /** Bytes the memory holds (the wasm memory never shrinks). */
  get capacityBytes(): number {
    return this.memory ? this.memory.buffer.byteLength : this.fallbackBuffer.byteLength;
  }

  /** Whether the memory is shared with the kernel pool's workers (passes may run on all threads). */
  get shared(): boolean {
    return this.memory !== undefined && isSharedMemory(this.memory);
  }

  /** Frees every region; moves to a shared memory when a kernel pool has started since the last. */
  reset(): void {
    if (this.onEngineHeap) return;
    this.top = 0;
    if (this.memory && kernelPool() && !isSharedMemory(this.memory)) this.memory = newMemory() ?? this.memory;
  }

  /** A new region of `floats` float32s, 16-byte aligned; contents undefined. */
  alloc(floats: number): Region {
    if (this.onEngineHeap) throw new Error('QueryNormKernels.alloc: on the engine heap, regions are tensors (heap.output)');
    const offset = this.top;
    const end = offset + ((floats * 4 + 15) & ~15);
    this.ensure(end);
    this.top = end;
    return { offset, length: floats };
  }

  /** A Float32Array over `region` (valid until the next `alloc`). */
  view(region: Region): Float32Array {
    return new Float32Array(this.buffer(), region.offset, region.length);
  }

  /** Whether the SIMD kernels can run rows of width `f` (else the JS loops run: multiples of 8 only). */
  private useSimd(f: number): boolean {
    return this.memory !== undefined && f % 8 === 0;
  }

  private kernels(): ColumnKernelExports | null {
    return kernelsOnHeap<ColumnKernelExports>(this.memory!, COLUMN_MODULE.key, COLUMN_MODULE.functions);
  }

  /**
   * Runs kernel `fn` over [t, f] with `args(column)`: the kernel's leading arguments with every
   * region offset moved to `column` (columns from 0 for vectors and rows alike). One call over all
   * columns, or column ranges (multiples of 8) over the kernel pool's threads for a large pass.
   */
  private run(fn: ColumnKernel, t: number, f: number, args: (columnBytes: number) => number[]): void {
    const memory = this.memory!;
    const least = fn === 'col_sum' || fn === 'col_sum_prod' ? COLUMN_SUM_MIN_ELEMENTS_PER_THREAD : QUERY_NORM_MIN_ELEMENTS_PER_THREAD;
    const parts = Math.min(passParts(memory, t * f, least), f / 8);
    const calls = splitRange(f / 8, parts).map(([c0, c1]) => [...args(c0 * 32), t, (c1 - c0) * 8, f]);
    runCalls(memory, COLUMN_MODULE, fn, calls);
  }

  /** out[j] = sum_t a[t, j] over a [t, f] matrix. */
  colSum(a: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.run('col_sum', t, f, (c) => [a.offset + c, out.offset + c]);
    const [av, ov] = [this.view(a), this.view(out)];
    ov.fill(0, 0, f);
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[j]! += av[i * f + j]!;
  }

  /** out[j] = sum_t a[t, j] b[t, j]. */
  colSumProd(a: Region, b: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.run('col_sum_prod', t, f, (c) => [a.offset + c, b.offset + c, out.offset + c]);
    const [av, bv, ov] = [this.view(a), this.view(b), this.view(out)];
    ov.fill(0, 0, f);
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[j]! += av[i * f + j]! * bv[i * f + j]!;
  }

  /** out[t, j] = (a[t, j] - sub[j]) mul[j] + add[j]; `out` may be `a`. */
  affine(a: Region, sub: Region, mul: Region, add: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.run('affine', t, f, (c) => [a.offset + c, sub.offset + c, mul.offset + c, add.offset + c, out.offset + c]);
    const [av, sv, mv, dv, ov] = [this.view(a), this.view(sub), this.view(mul), this.view(add), this.view(out)];
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[i * f + j] = (av[i * f + j]! - sv[j]!) * mv[j]! + dv[j]!;
  }

  /** out[t, j] = (dy[t, j] - p[j] - xhat[t, j] q[j]) c[j]. */
  bnGrad(dy: Region, xhat: Region, p: Region, q: Region, c: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.run('bn_grad', t, f, (col) => [dy.offset + col, xhat.offset + col, p.offset + col, q.offset + col, c.offset + col, out.offset + col]);
    const [dv, xv, pv, qv, cv, ov] = [this.view(dy), this.view(xhat), this.view(p), this.view(q), this.view(c), this.view(out)];
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < f; j++) ov[i * f + j] = (dv[i * f + j]! - pv[j]! - xv[i * f + j]! * qv[j]!) * cv[j]!;
    }
  }

  private buffer(): ArrayBuffer {
    return this.memory ? (this.memory.buffer as ArrayBuffer) : this.fallbackBuffer;
  }

  private ensure(bytes: number): void {
    if (bytes <= this.capacityBytes) return;
    if (bytes > 4 * 1024 ** 3 - PAGE) {
      throw new Error(`query norm kernels: ${(bytes / 1024 ** 3).toFixed(2)} GiB of queries exceed a wasm memory (4 GiB); use fewer tokens per call`);
    }
    // Exactly what is needed (a step asks for the same sizes every time; the memory never shrinks).
    if (this.memory) {
      this.memory.grow(Math.ceil((bytes - this.capacityBytes) / PAGE));
    } else {
      const grown = new ArrayBuffer(Math.ceil(bytes / PAGE) * PAGE);
      new Uint8Array(grown).set(new Uint8Array(this.fallbackBuffer, 0, this.top));
      this.fallbackBuffer = grown;
    }
  }
}
