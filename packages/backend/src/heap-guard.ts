// The wasm heap is wasm32: at most 4 GiB, and a failed allocation returns offset 0 and silently
// corrupts memory. This guard wraps the engine's allocator so that an allocation that would pass a
// budget, or that the allocator refuses, throws a clear error instead.
import * as tf from '@tensorflow/tfjs-core';

export const DEFAULT_HEAP_BUDGET_BYTES = 3.5 * 1024 ** 3;

/** Thrown instead of letting the wasm heap overflow. */
export class HeapBudgetError extends Error {
  constructor(
    readonly requestedBytes: number,
    readonly liveBytes: number,
    readonly budgetBytes: number,
  ) {
    super(
      `wasm heap budget exceeded: allocating ${fmt(requestedBytes)} with ${fmt(liveBytes)} live would pass ` +
        `the budget of ${fmt(budgetBytes)} (setHeapBudget raises it; the wasm heap cannot exceed 4 GiB)`,
    );
    this.name = 'HeapBudgetError';
  }
}

function fmt(bytes: number): string {
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${bytes} B`;
}

interface WasmModule {
  _malloc(n: number): number;
  _free(p: number): void;
  HEAPU8: Uint8Array;
}

interface GuardState {
  budget: number;
  live: number;
  sizes: Map<number, number>;
}

const GUARD = Symbol.for('@peer/backend/heap-guard');

function wasmModule(): (WasmModule & { [GUARD]?: GuardState }) | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  return (tf.backend() as unknown as { wasm: WasmModule & { [GUARD]?: GuardState } }).wasm;
}

/**
 * Replaces `wasm[name]` by `wrap(inner)` for good. Emscripten exports `_malloc`/`_free` as lazy
 * stubs that, on their first call, overwrite `Module._malloc` with the raw export: a plain
 * assignment of our wrapper would be dropped after one allocation. The setter keeps the wrapper
 * and routes such overwrites to `inner`.
 */
function intercept<F extends (...args: never[]) => unknown>(
  wasm: WasmModule,
  name: '_malloc' | '_free',
  wrap: (inner: () => F) => F,
): void {
  let inner = wasm[name] as unknown as F;
  const wrapped = wrap(() => inner);
  Object.defineProperty(wasm, name, {
    configurable: true,
    enumerable: true,
    get: () => wrapped,
    set: (f: F) => {
      inner = f;
    },
  });
}

/** Wraps the wasm allocator once; later calls only change the budget. */
export function installHeapGuard(budgetBytes: number = DEFAULT_HEAP_BUDGET_BYTES): void {
  const wasm = wasmModule();
  if (!wasm) return;
  if (wasm[GUARD]) {
    wasm[GUARD].budget = budgetBytes;
    return;
  }
  const state: GuardState = { budget: budgetBytes, live: 0, sizes: new Map() };
  intercept<(n: number) => number>(wasm, '_malloc', (malloc) => (n: number): number => {
    if (state.live + n > state.budget) throw new HeapBudgetError(n, state.live, state.budget);
    const p = malloc()(n);
    if (p === 0 && n > 0) {
      throw new Error(`wasm heap exhausted: the allocator refused ${fmt(n)} with ${fmt(state.live)} live`);
    }
    state.sizes.set(p >>> 0, n);
    state.live += n;
    return p;
  });
  intercept<(p: number) => void>(wasm, '_free', (free) => (p: number): void => {
    const key = p >>> 0;
    const n = state.sizes.get(key);
    if (n !== undefined) {
      state.live -= n;
      state.sizes.delete(key);
    }
    free()(p);
  });
  wasm[GUARD] = state;
}

/** Sets the wasm heap budget in bytes (no effect on other engines). */
export function setHeapBudget(bytes: number): void {
  if (!(bytes > 0) || !Number.isFinite(bytes)) throw new Error(`heap budget must be a positive number of bytes, got ${bytes}`);
  installHeapGuard(bytes);
}

export interface HeapStats {
  /** Bytes held by live tensors allocated through the guard. */
  liveBytes: number;
  /** The current budget. */
  budgetBytes: number;
  /** The size of the wasm memory; it never shrinks. */
  heapBytes: number;
}

/** Heap statistics of the wasm engine, or undefined on other engines. */
export function heapStats(): HeapStats | undefined {
  const wasm = wasmModule();
  if (!wasm) return undefined;
  const state = wasm[GUARD];
  return {
    liveBytes: state?.live ?? 0,
    budgetBytes: state?.budget ?? Number.POSITIVE_INFINITY,
    heapBytes: wasm.HEAPU8.buffer.byteLength,
  };
}
