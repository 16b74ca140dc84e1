// One kernel pass split into contiguous parts over the kernel pool's threads (@peer/backend/wasm's
// KernelPool), or run in one call: the pool must run, the memory must be shared with its workers,
// and each part must hold at least `minPerThread` items (handing a pass out costs some
// microseconds; each caller's threshold is measured in its package README).
//
// A pass large enough is cut into up to PASS_PARTS_PER_THREAD parts per thread, not one: threads
// claim parts until none is left, so a thread that wakes late or runs slower (its caches hold less
// of the data) takes fewer parts, where with one part per thread the others waited for it (backend
// README, "Parts per thread").
import type { FunctionBuilder } from '../wasm-emitter/wasm-emitter.js';
import type { WasmMemory } from '../wasm-emitter/wasm-api.js';
import { isSharedMemory, kernelsOnHeap } from './engine-heap.js';
import { kernelPool, splitRange } from './kernel-pool.js';

export interface KernelModule {
  /** The module's key for `kernelsOnHeap`. */
  key: string;
  functions: () => { name: string; builder: FunctionBuilder }[];
}

/** The most parts per pool thread a pass is cut into (see the file comment). */
export const PASS_PARTS_PER_THREAD = 4;

let partsPerThread = PASS_PARTS_PER_THREAD;

/** Benchmarks and tests: another number of parts per thread (undefined: PASS_PARTS_PER_THREAD). */
export function setPassPartsPerThread(parts: number | undefined): void {
  if (parts !== undefined && !(Number.isSafeInteger(parts) && parts >= 1)) throw new Error(`setPassPartsPerThread: parts must be a whole number >= 1, got ${parts}`);
  partsPerThread = parts ?? PASS_PARTS_PER_THREAD;
}

/**
 * How many parts a pass over `count` items on `memory` is split into (1: run it on this thread): up
 * to `partsPerThread` per pool thread, each of at least `minPerThread` items; `minPerThread` 0
 * splits every pass into the most parts.
 */
export function passParts(memory: WasmMemory, count: number, minPerThread: number): number {
  const pool = kernelPool();
  if (!pool || !isSharedMemory(memory)) return 1;
  const most = pool.threads * partsPerThread;
  const byCount = minPerThread === 0 ? most : Math.floor(count / minPerThread);
  return Math.max(1, Math.min(most, byCount));
}

/**
 * Runs `fn` of `module` on `memory` over `count` items: `args(start, end)` are its arguments for
 * items [start, end). Split over the pool's threads as `passParts` says, else one call here.
 */
export function runPass(memory: WasmMemory, module: KernelModule, fn: string, count: number, minPerThread: number, args: (start: number, end: number) => number[]): void {
  runCalls(memory, module, fn, splitRange(count, passParts(memory, count, minPerThread)).map(([a, b]) => args(a, b)));
}

/** Runs `fn` once per entry of `calls` (on disjoint outputs): one call runs here, more on the pool. */
export function runCalls(memory: WasmMemory, module: KernelModule, fn: string, calls: number[][]): void {
  if (calls.length > 1) {
    const pool = kernelPool();
    if (!pool) throw new Error(`runCalls: ${calls.length} calls of ${fn} without a kernel pool`);
    pool.run(memory, module.key, module.functions, fn, calls);
    return;
  }
  const exports = kernelsOnHeap<Record<string, (...a: number[]) => void>>(memory, module.key, module.functions);
  if (!exports) throw new Error(`runCalls: kernel module '${module.key}' cannot run on this memory`);
  for (const call of calls) exports[fn]!(...call);
}
