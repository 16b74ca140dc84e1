// An arena: one growable WebAssembly.Memory outside the tfjs heap, handed out in blocks that are
// never freed one by one. An expert table keeps its rows, optimizer state, gradient slots and the
// mixture's scratch in one (each table its own), so that SIMD kernels instantiated on the memory
// (`kernelsOnHeap`) work on them in place. A wasm32 memory holds at most 4 GiB.
//
// Views into the memory are re-created when it grows (growing detaches every earlier view):
// ArenaArray.array always returns a live view.
import { wasmApi, type WasmMemory } from '../wasm-emitter/wasm-api.js';
import { kernelPool } from './kernel-pool.js';

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536;
/** Largest arena: 4 GiB, the wasm32 limit. */
export const MAX_ARENA_BYTES = PAGE_BYTES * MAX_PAGES;
const ALIGN = 64;
/** Blocks of at least this size are staggered (see `alloc`). */
const STAGGER_MIN_BYTES = 1 << 20;
/** Successive large blocks start at these offsets modulo 4 KiB: 1 KiB + 1 line apart. */
const STAGGER_STEP = 1088;
const PAGE_4K = 4096;

export class Arena {
  readonly memory: WasmMemory;
  private top = 0;
  private largeBlocks = 0;

  private constructor(memory: WasmMemory) {
    this.memory = memory;
  }

  /**
   * An arena with `reserveBytes` addressable up front (pages are only backed by memory once
   * written), or undefined where WebAssembly is missing or the size is past 4 GiB. Its memory is
   * shared between threads (the kernel pool's workers run on it) when `shared` is true, which is
   * the default while a kernel pool runs (`setKernelThreads`).
   */
  static create(reserveBytes: number, shared: boolean = kernelPool() !== undefined): Arena | undefined {
    const pages = Math.ceil(reserveBytes / PAGE_BYTES);
    if (pages > MAX_PAGES) return undefined;
    if (!wasmApi) return undefined;
    let memory: WasmMemory;
    try {
      memory = new wasmApi.Memory({ initial: Math.max(1, pages), maximum: MAX_PAGES, ...(shared ? { shared: true } : {}) });
    } catch {
      return undefined;
    }
    return new Arena(memory);
  }

  /** Bytes handed out so far. */
  get used(): number {
    return this.top;
  }

  /**
   * Byte offset of a new zeroed block of `bytes`, growing the memory if needed; undefined if it
   * cannot fit in 4 GiB.
   *
   * Large blocks (a table's rows, its moments, its gradient slots) are staggered: the k-th starts
   * at (k * 1088) mod 4096 past a 4 KiB boundary. Unstaggered, row r of w, m and v sits at the same
   * address modulo 4 KiB (the arrays are 1 GiB apart at N = 1024^2, D = 256), so the optimizer's
   * loads and stores alias in the core's store-forwarding check and share cache sets, and the lazy
   * Adam sweep over random rows ran several times slower (timings in the expert-store README).
   */
  alloc(bytes: number): number | undefined {
    const offset =
      bytes >= STAGGER_MIN_BYTES
        ? Math.ceil(this.top / PAGE_4K) * PAGE_4K + ((this.largeBlocks * STAGGER_STEP) % PAGE_4K)
        : Math.ceil(this.top / ALIGN) * ALIGN;
    const end = offset + bytes;
    if (end > MAX_ARENA_BYTES) return undefined;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE_BYTES));
      } catch {
        return undefined;
      }
    }
    this.top = end;
    if (bytes >= STAGGER_MIN_BYTES) this.largeBlocks++;
    return offset;
  }
}

export type ArenaArrayKind = Float32Array | Int32Array;

/** A typed array living in an arena; `array` is always a live view. */
export class ArenaArray<T extends ArenaArrayKind> {
  private view: T;

  constructor(
    readonly arena: Arena,
    readonly offset: number,
    readonly length: number,
    private readonly Ctor: new (buffer: ArrayBuffer, byteOffset: number, length: number) => T,
  ) {
    this.view = new Ctor(arena.memory.buffer, offset, length);
  }

  /** Allocates `length` elements in `arena`, or returns undefined if it is full. */
  static alloc<T extends ArenaArrayKind>(
    arena: Arena,
    length: number,
    Ctor: (new (buffer: ArrayBuffer, byteOffset: number, length: number) => T) & { BYTES_PER_ELEMENT: number },
  ): ArenaArray<T> | undefined {
    const offset = arena.alloc(length * Ctor.BYTES_PER_ELEMENT);
    return offset === undefined ? undefined : new ArenaArray(arena, offset, length, Ctor);
  }

  get array(): T {
    const buffer = this.arena.memory.buffer;
    if (this.view.buffer !== buffer) this.view = new this.Ctor(buffer, this.offset, this.length);
    return this.view;
  }
}
