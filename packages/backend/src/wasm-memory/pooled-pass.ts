// One kernel pass split into contiguous parts over the kernel pool's threads (@peer/backend/wasm's
// KernelPool), or run in one call: the pool must run, the memory must be shared with its workers,
// and the pass must hold at least `minPerThread` items per thread (handing a pass out costs some
// microseconds; each caller's threshold is measured in its package README).
import type { FunctionBuilder } from '../wasm-emitter/wasm-emitter.js';
import type { WasmMemory } from '../wasm-emitter/wasm-api.js';
import { isSharedMemory, kernelsOnHeap } from './engine-heap.js';
import { kernelPool, splitRange } from './kernel-pool.js';

export interface KernelModule {
  /** The module's key for `kernelsOnHeap`. */
  key: string;
  functions: () => { name: string; builder: FunctionBuilder }[];
}

/**
 * How many parts a pass over `count` items on `memory` is split into (1: run it on this thread);
 * `minPerThread` 0 splits every pass over all threads.
 */
export function passParts(memory: WasmMemory, count: number, minPerThread: number): number {
  const pool = kernelPool();
  if (!pool || !isSharedMemory(memory)) return 1;
  const byCount = minPerThread === 0 ? pool.threads : Math.floor(count / minPerThread);
  return Math.max(1, Math.min(pool.threads, byCount));
}

/**
 * Runs `fn` of `module` on `memory` over `count` items: `args(start, end)` are its arguments for
 * items [start, end). Split over the pool's threads as `passParts` says, else one call here.
 */
export function runPass(memory: WasmMemory, module: KernelModule, fn: string, count: number, minPerThread: number, args: (start: number, end: number) => number[]): void {
  runCalls(memory, module, fn, splitRange(count, passParts(memory, count, minPerThread)).map(([a, b]) => args(a, b)));
}

/** Runs `fn` once per entry of `calls` (one per thread, on disjoint outputs): one call runs here, more on the pool. */
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
