// A WebAssembly SIMD kernel module (built at load time by wasm-emitter.ts from the builders in
// row-kernels.ts) with its own growable memory, managed as an arena, and the
// plain JS loops of the same semantics that run where the kernels cannot (no wasm SIMD, widths not
// a multiple of 8).
import { emitModule, wasmApi, type WasmMemory, type WasmModule } from '@peer/backend/wasm';
import { buildDot, buildGroupSum, buildWsum } from './row-kernels.js';

const PAGE = 65536;

interface KernelExports {
  memory: WasmMemory;
  dot(rows: number, slot: number, x: number, out: number, t: number, r: number, d: number): void;
  wsum(rows: number, slot: number, w: number, y: number, t: number, r: number, d: number): void;
  group_sum(order: number, groupEnd: number, c: number, x: number, out: number, u: number, r: number, d: number): void;
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
  ], { kind: 'exported', initialPages: 1 });
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
 * One instance of the kernels with its own growable memory, managed as an arena: `reset`, then
 * `alloc` regions, fill them through `view`, run kernels. Views are re-created after every
 * allocation (growing the memory detaches earlier views).
 */
export class KernelArena {
  /** True when the wasm SIMD kernels run; false means the JS fallback. */
  readonly simd: boolean;
  private readonly exports: KernelExports | undefined;
  private fallbackBuffer = new ArrayBuffer(0);
  private top = 0;

  constructor(options: { forceFallback?: boolean } = {}) {
    const module = options.forceFallback ? null : kernelModule();
    this.exports = module ? (new wasmApi!.Instance(module).exports as unknown as KernelExports) : undefined;
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

  /** Whether the SIMD kernels can run rows of width `d` (else the JS loops run: multiples of 8 only). */
  private useSimd(d: number): boolean {
    return this.exports !== undefined && d % 8 === 0;
  }

  /** out[t, r] = rows[slot[t, r], :] . x[t, :]; `slot` is an int32 region of t*r entries. */
  dot(rows: Region, slot: Region, x: Region, out: Region, t: number, r: number, d: number): void {
    if (this.useSimd(d)) return this.exports!.dot(rows.offset, slot.offset, x.offset, out.offset, t, r, d);
    const [rv, sv, xv, ov] = [this.view(rows), this.viewInt(slot), this.view(x), this.view(out)];
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = sv[ti * r + ri]! * d;
        let acc = 0;
        for (let j = 0; j < d; j++) acc += rv[o + j]! * xv[ti * d + j]!;
        ov[ti * r + ri] = acc;
      }
    }
  }

  /** y[t, :] = sum_r w[t, r] rows[slot[t, r], :]. */
  wsum(rows: Region, slot: Region, w: Region, y: Region, t: number, r: number, d: number): void {
    if (this.useSimd(d)) return this.exports!.wsum(rows.offset, slot.offset, w.offset, y.offset, t, r, d);
    const [rv, sv, wv, yv] = [this.view(rows), this.viewInt(slot), this.view(w), this.view(y)];
    yv.fill(0, 0, t * d);
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = sv[ti * r + ri]! * d;
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
      throw new Error(`layer kernels: ${(bytes / 1024 ** 3).toFixed(2)} GiB of rows exceed a wasm memory (4 GiB); lower tokenChunk`);
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
