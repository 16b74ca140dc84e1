// Row kernels of the expert mixture, in WebAssembly SIMD (f32x4) built by wasm-emitter.ts, with a
// plain JS fallback of the same semantics (hosts without wasm SIMD, widths not a multiple of 8).
//
// T tokens, R rows per token (h*k retrieved experts), D row width. Rows are token-major:
// row (t, r) starts at element (t*R + r)*D.
//
//   dot:   out[t, r]    = rows[t, r, :] . x[t, :]            (a = u . x;  s = v . dy)
//   wsum:  y[t, :]      = sum_r w[t, r] rows[t, r, :]        (y = sum w v;  dx = sum da u)
//   groupSum: out[u, :] = sum_{o in group u} c[o] x[o / R, :]
//                                          (dU_e = sum da x, dV_e = sum w dy per distinct expert e)
//
// Why: these are memory-bound products over [T, R, D] rows (64 MiB per table at T = 512, R = 128,
// D = 256). Measured on one core here, the wasm SIMD loops run one pass in about 3-5 ms, where
// tfjs-wasm's broadcasting mul + sum takes 100+ ms and a JS loop about 30 ms.
import { emitModule, FunctionBuilder, I32, V128 } from './wasm-emitter.js';

const PAGE = 65536;

// The WebAssembly JS API, typed here: the project compiles against ES2022 + Node types only, and
// neither declares it.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmModule {
  readonly __brand?: 'WebAssembly.Module';
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule) => { exports: unknown };
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

interface KernelExports {
  memory: WasmMemory;
  dot(rows: number, x: number, out: number, t: number, r: number, d: number): void;
  wsum(rows: number, w: number, y: number, t: number, r: number, d: number): void;
  group_sum(order: number, groupEnd: number, c: number, x: number, out: number, u: number, r: number, d: number): void;
}

/** An f32x4 inner loop over a row: j from 0 to D*4 bytes in steps of 32 (two vectors). */
function rowLoop(f: FunctionBuilder, j: number, dBytes: number, body: (offset: 0 | 16) => void): void {
  f.forLoop(j, dBytes, 32, () => {
    body(0);
    body(16);
  });
}

function buildDot(): FunctionBuilder {
  const [rows, x, out, tCount, rCount, d] = [0, 1, 2, 3, 4, 5];
  const f = new FunctionBuilder(6);
  const t = f.local(I32);
  const r = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const acc0 = f.local(V128);
  const acc1 = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.forLoop(t, tCount, 1, () => {
    f.forLoop(r, rCount, 1, () => {
      f.v128Zero().set(acc0).v128Zero().set(acc1);
      rowLoop(f, j, dBytes, (offset) => {
        const acc = offset === 0 ? acc0 : acc1;
        f.get(acc);
        f.get(rows).get(j).add().v128Load(offset);
        f.get(x).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().set(acc);
      });
      // out[0] = horizontal sum of acc0 + acc1
      f.get(out);
      f.get(acc0).get(acc1).f32x4Add().set(acc0);
      f.get(acc0).f32x4ExtractLane(0).get(acc0).f32x4ExtractLane(1).f32Add();
      f.get(acc0).f32x4ExtractLane(2).get(acc0).f32x4ExtractLane(3).f32Add();
      f.f32Add().f32Store();
      f.increment(out, 4);
      f.increment(rows, () => f.get(dBytes));
    });
    f.increment(x, () => f.get(dBytes));
  });
  return f;
}

function buildWsum(): FunctionBuilder {
  const [rows, w, y, tCount, rCount, d] = [0, 1, 2, 3, 4, 5];
  const f = new FunctionBuilder(6);
  const t = f.local(I32);
  const r = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const wv = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, dBytes, (offset) => {
      f.get(y).get(j).add().v128Zero().v128Store(offset);
    });
    f.forLoop(r, rCount, 1, () => {
      f.get(w).f32Load().f32x4Splat().set(wv);
      f.increment(w, 4);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(y).get(j).add(); // store address
        f.get(y).get(j).add().v128Load(offset);
        f.get(wv);
        f.get(rows).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().v128Store(offset);
      });
      f.increment(rows, () => f.get(dBytes));
    });
    f.increment(y, () => f.get(dBytes));
  });
  return f;
}

function buildGroupSum(): FunctionBuilder {
  const [order, groupEnd, coef, src, out, uCount, perToken, d] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f = new FunctionBuilder(8);
  const u = f.local(I32);
  const i = f.local(I32);
  const end = f.local(I32);
  const o = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const row = f.local(I32);
  const cv = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.i32(0).set(i);
  f.forLoop(u, uCount, 1, () => {
    rowLoop(f, j, dBytes, (offset) => {
      f.get(out).get(j).add().v128Zero().v128Store(offset);
    });
    f.get(groupEnd).i32Load().set(end);
    f.increment(groupEnd, 4);
    f.whileBelow(i, end, 1, () => {
      // o = order[i]; cv = splat(c[o]); row = src + (o / R) * D * 4
      f.get(order).get(i).i32(2).shl().add().i32Load().set(o);
      f.get(coef).get(o).i32(2).shl().add().f32Load().f32x4Splat().set(cv);
      f.get(src).get(o).get(perToken).divU().get(dBytes).mul().add().set(row);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(out).get(j).add();
        f.get(out).get(j).add().v128Load(offset);
        f.get(cv);
        f.get(row).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().v128Store(offset);
      });
    });
    f.increment(out, () => f.get(dBytes));
  });
  return f;
}

let compiled: WasmModule | null | undefined;

/** The compiled kernel module, or null where the host has no WebAssembly or no wasm SIMD. */
function kernelModule(): WasmModule | null {
  if (compiled !== undefined) return compiled;
  if (!wasmApi) return (compiled = null);
  const bytes = emitModule([
    { name: 'dot', builder: buildDot() },
    { name: 'wsum', builder: buildWsum() },
    { name: 'group_sum', builder: buildGroupSum() },
  ]);
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
 * One instance of the row kernels with its own growable memory, managed as an arena: `reset`, then
 * `alloc` regions, fill them through `view`, run kernels. Views are re-created after every
 * allocation (growing the memory detaches earlier views).
 */
export class RowKernels {
  /** True when the wasm SIMD kernels run; false means the JS fallback. */
  readonly simd: boolean;
  private readonly exports: KernelExports | undefined;
  private fallbackBuffer = new ArrayBuffer(0);
  private top = 0;

  constructor(options: { forceFallback?: boolean } = {}) {
    const module = options.forceFallback ? null : kernelModule();
    this.exports = module ? (new wasmApi!.Instance(module).exports as KernelExports) : undefined;
    this.simd = this.exports !== undefined;
  }

  /** Bytes the arena holds (the wasm memory never shrinks). */
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

  /** Whether the SIMD kernels can run rows of width `d` (else the JS loops run). */
  private useSimd(d: number): boolean {
    return this.exports !== undefined && d % 8 === 0;
  }

  dot(rows: Region, x: Region, out: Region, t: number, r: number, d: number): void {
    if (this.useSimd(d)) return this.exports!.dot(rows.offset, x.offset, out.offset, t, r, d);
    const [rv, xv, ov] = [this.view(rows), this.view(x), this.view(out)];
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = (ti * r + ri) * d;
        let acc = 0;
        for (let j = 0; j < d; j++) acc += rv[o + j]! * xv[ti * d + j]!;
        ov[ti * r + ri] = acc;
      }
    }
  }

  wsum(rows: Region, w: Region, y: Region, t: number, r: number, d: number): void {
    if (this.useSimd(d)) return this.exports!.wsum(rows.offset, w.offset, y.offset, t, r, d);
    const [rv, wv, yv] = [this.view(rows), this.view(w), this.view(y)];
    yv.fill(0, 0, t * d);
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = (ti * r + ri) * d;
        const s = wv[ti * r + ri]!;
        for (let j = 0; j < d; j++) yv[ti * d + j]! += s * rv[o + j]!;
      }
    }
  }

  /**
   * out[u, :] = sum over i in [groupEnd[u-1], groupEnd[u]) of c[o] x[o / r, :] with o = order[i]:
   * the row gradients of each distinct expert, summed over its occurrences o (o = t*r + slot).
   * `order` and `groupEnd` are int32 regions.
   */
  groupSum(order: Region, groupEnd: Region, c: Region, x: Region, out: Region, u: number, r: number, d: number): void {
    if (this.useSimd(d)) return this.exports!.group_sum(order.offset, groupEnd.offset, c.offset, x.offset, out.offset, u, r, d);
    const buffer = this.buffer();
    const ord = new Int32Array(buffer, order.offset, order.length);
    const ends = new Int32Array(buffer, groupEnd.offset, groupEnd.length);
    const [cv, xv, ov] = [this.view(c), this.view(x), this.view(out)];
    ov.fill(0, 0, u * d);
    let i = 0;
    for (let g = 0; g < u; g++) {
      for (; i < ends[g]!; i++) {
        const o = ord[i]!;
        const s = cv[o]!;
        const src = Math.floor(o / r) * d;
        for (let j = 0; j < d; j++) ov[g * d + j]! += s * xv[src + j]!;
      }
    }
  }

  /** An Int32Array over `region` (valid until the next `alloc`). */
  viewInt(region: Region): Int32Array {
    return new Int32Array(this.buffer(), region.offset, region.length);
  }

  private buffer(): ArrayBuffer {
    return this.exports ? this.exports.memory.buffer : this.fallbackBuffer;
  }

  private ensure(bytes: number): void {
    if (bytes <= this.capacityBytes) return;
    if (bytes > 4 * 1024 ** 3 - PAGE) {
      throw new Error(`expert-mixture kernels: ${(bytes / 1024 ** 3).toFixed(2)} GiB of rows exceed a wasm memory (4 GiB); lower tokenChunk`);
    }
    // Exactly what is needed (a step asks for the same sizes every time; the memory never shrinks).
    const target = bytes;
    if (this.exports) {
      this.exports.memory.grow(Math.ceil((target - this.capacityBytes) / PAGE));
    } else {
      const grown = new ArrayBuffer(Math.ceil(target / PAGE) * PAGE);
      new Uint8Array(grown).set(new Uint8Array(this.fallbackBuffer, 0, this.top));
      this.fallbackBuffer = grown;
    }
  }
}
