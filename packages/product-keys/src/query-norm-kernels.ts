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
import { emitModule, FunctionBuilder, I32, rowLoop, wasmApi, type WasmMemory, type WasmModule } from '@peer/backend/wasm';

const PAGE = 65536;

interface ColumnKernelExports {
  memory: WasmMemory;
  col_sum(a: number, out: number, t: number, f: number): void;
  col_sum_prod(a: number, b: number, out: number, t: number, f: number): void;
  affine(a: number, sub: number, mul: number, add: number, out: number, t: number, f: number): void;
  bn_grad(dy: number, xhat: number, p: number, q: number, c: number, out: number, t: number, f: number): void;
}

/** out = sum over rows of a (or of a * b when `product`). */
function buildColSum(product: boolean): FunctionBuilder {
  const params = product ? 5 : 4;
  // (a, [b,] out, T, F)
  const a = 0;
  const b = 1;
  const out = product ? 2 : 1;
  const tCount = out + 1;
  const fCount = out + 2;
  const f = new FunctionBuilder(params);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
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
    f.increment(a, () => f.get(fBytes));
    if (product) f.increment(b, () => f.get(fBytes));
  });
  return f;
}

/** (a, sub, mul, add, out, T, F): out[t, j] = (a[t, j] - sub[j]) * mul[j] + add[j]. */
function buildAffine(): FunctionBuilder {
  const [a, sub, mul, add, out, tCount, fCount] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
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
    f.increment(a, () => f.get(fBytes));
    f.increment(out, () => f.get(fBytes));
  });
  return f;
}

/** (dy, xhat, p, q, c, out, T, F): out[t, j] = (dy[t, j] - p[j] - xhat[t, j] * q[j]) * c[j]. */
function buildBnGrad(): FunctionBuilder {
  const [dy, xhat, p, q, c, out, tCount, fCount] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f = new FunctionBuilder(8);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
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
    f.increment(dy, () => f.get(fBytes));
    f.increment(xhat, () => f.get(fBytes));
    f.increment(out, () => f.get(fBytes));
  });
  return f;
}

let compiled: WasmModule | null | undefined;

/** The compiled module, or null where the host has no WebAssembly or no wasm SIMD. */
function columnKernelModule(): WasmModule | null {
  if (compiled !== undefined) return compiled;
  if (!wasmApi) return (compiled = null);
  const bytes = emitModule(
    [
      { name: 'col_sum', builder: buildColSum(false) },
      { name: 'col_sum_prod', builder: buildColSum(true) },
      { name: 'affine', builder: buildAffine() },
      { name: 'bn_grad', builder: buildBnGrad() },
    ],
    { kind: 'exported', initialPages: 1 },
  );
  try {
    compiled = new wasmApi.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/** A region of kernel memory: byte offset and float count. */
export interface Region {
  offset: number;
  length: number;
}

/**
 * One instance of the column kernels with its own growable memory, managed as an arena: `reset`,
 * then `alloc` regions, fill them through `view`, run kernels. Views are re-created after every
 * allocation (growing the memory detaches earlier views).
 */
export class QueryNormKernels {
  /** True when the wasm SIMD kernels run; false means the JS fallback. */
  readonly simd: boolean;
  private readonly exports: ColumnKernelExports | undefined;
  private fallbackBuffer = new ArrayBuffer(0);
  private top = 0;

  constructor(options: { forceFallback?: boolean } = {}) {
    const module = options.forceFallback ? null : columnKernelModule();
    this.exports = module ? (new wasmApi!.Instance(module).exports as unknown as ColumnKernelExports) : undefined;
    this.simd = this.exports !== undefined;
  }

  /** Bytes the memory holds (the wasm memory never shrinks). */
  get capacityBytes(): number {
    return this.exports ? this.exports.memory.buffer.byteLength : this.fallbackBuffer.byteLength;
  }

  /** Frees every region. */
  reset(): void {
    this.top = 0;
  }

  /** A new region of `floats` float32s, 16-byte aligned; contents undefined. */
  alloc(floats: number): Region {
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
    return this.exports !== undefined && f % 8 === 0;
  }

  /** out[j] = sum_t a[t, j] over a [t, f] matrix. */
  colSum(a: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.exports!.col_sum(a.offset, out.offset, t, f);
    const [av, ov] = [this.view(a), this.view(out)];
    ov.fill(0, 0, f);
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[j]! += av[i * f + j]!;
  }

  /** out[j] = sum_t a[t, j] b[t, j]. */
  colSumProd(a: Region, b: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.exports!.col_sum_prod(a.offset, b.offset, out.offset, t, f);
    const [av, bv, ov] = [this.view(a), this.view(b), this.view(out)];
    ov.fill(0, 0, f);
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[j]! += av[i * f + j]! * bv[i * f + j]!;
  }

  /** out[t, j] = (a[t, j] - sub[j]) mul[j] + add[j]; `out` may be `a`. */
  affine(a: Region, sub: Region, mul: Region, add: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.exports!.affine(a.offset, sub.offset, mul.offset, add.offset, out.offset, t, f);
    const [av, sv, mv, dv, ov] = [this.view(a), this.view(sub), this.view(mul), this.view(add), this.view(out)];
    for (let i = 0; i < t; i++) for (let j = 0; j < f; j++) ov[i * f + j] = (av[i * f + j]! - sv[j]!) * mv[j]! + dv[j]!;
  }

  /** out[t, j] = (dy[t, j] - p[j] - xhat[t, j] q[j]) c[j]. */
  bnGrad(dy: Region, xhat: Region, p: Region, q: Region, c: Region, out: Region, t: number, f: number): void {
    if (this.useSimd(f)) return this.exports!.bn_grad(dy.offset, xhat.offset, p.offset, q.offset, c.offset, out.offset, t, f);
    const [dv, xv, pv, qv, cv, ov] = [this.view(dy), this.view(xhat), this.view(p), this.view(q), this.view(c), this.view(out)];
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < f; j++) ov[i * f + j] = (dv[i * f + j]! - pv[j]! - xv[i * f + j]! * qv[j]!) * cv[j]!;
    }
  }

  private buffer(): ArrayBuffer {
    return this.exports ? this.exports.memory.buffer : this.fallbackBuffer;
  }

  private ensure(bytes: number): void {
    if (bytes <= this.capacityBytes) return;
    if (bytes > 4 * 1024 ** 3 - PAGE) {
      throw new Error(`query norm kernels: ${(bytes / 1024 ** 3).toFixed(2)} GiB of queries exceed a wasm memory (4 GiB); use fewer tokens per call`);
    }
    // Exactly what is needed (a step asks for the same sizes every time; the memory never shrinks).
    if (this.exports) {
      this.exports.memory.grow(Math.ceil((bytes - this.capacityBytes) / PAGE));
    } else {
      const grown = new ArrayBuffer(Math.ceil(bytes / PAGE) * PAGE);
      new Uint8Array(grown).set(new Uint8Array(this.fallbackBuffer, 0, this.top));
      this.fallbackBuffer = grown;
    }
  }
}
