// The wasm engine's heap as a place to run our own WebAssembly SIMD kernels in place: its memory
// object, the byte offset of a tensor's data, new outputs allocated on it, live views of a tensor's
// values, and kernel modules instantiated on that memory. These are internals of
// @tensorflow/tfjs-backend-wasm 4.x (the backend's `wasm.asm.memory`, `dataIdMap`, `makeOutput`),
// declared once in wasm/wasm-backend.ts and checked at every use: where any is missing,
// `engineHeap` returns undefined and callers take their portable path.
import * as tf from '@tensorflow/tfjs-core';
import { emitModule, type FunctionBuilder } from '../wasm-emitter/wasm-emitter.js';
import { wasmApi, type WasmMemory, type WasmModule } from '../wasm-emitter/wasm-api.js';
import type { WasmBackend } from '../wasm/wasm-backend.js';

export interface EngineHeap {
  memory: WasmMemory;
  /** Byte offset of a tensor's data on the heap. */
  offsetOf(t: { dataId: object }): number;
  /** A new uninitialized tensor on the heap (the caller owns it; allocating may grow the heap). */
  output(shape: number[], dtype: 'float32' | 'int32'): tf.Tensor;
  /**
   * The float32 values of `t` in place on the heap (no copy), valid until the next allocation on
   * the engine, which may grow the heap and detach it.
   */
  floats(t: tf.Tensor): Float32Array;
}

/** The wasm engine's heap memory (the threaded build imports a shared one), or undefined. */
export function engineMemory(engine: Partial<WasmBackend>): WasmMemory | undefined {
  return engine.wasm?.asm?.memory ?? engine.wasm?.wasmMemory;
}

/** The wasm engine's heap, or undefined on other engines or another tfjs-backend-wasm layout. */
export function engineHeap(): EngineHeap | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const engine = tf.backend() as unknown as Partial<WasmBackend>;
  const memory = engineMemory(engine);
  const map = engine.dataIdMap;
  const makeOutput = engine.makeOutput;
  if (!memory || !map || typeof makeOutput !== 'function') return undefined;
  const offsetOf = (t: { dataId: object }): number => {
    const at = map.get(t.dataId)?.memoryOffset;
    if (at === undefined) throw new Error('engineHeap: tensor is not on the wasm heap');
    return at;
  };
  return {
    memory,
    offsetOf,
    output: (shape, dtype) => tf.engine().makeTensorFromTensorInfo(makeOutput.call(engine, shape, dtype)),
    floats: (t) => new Float32Array(memory.buffer, offsetOf(t), t.size),
  };
}

/**
 * The float32 values of `t` without a copy on the wasm engine (a live view of its heap, valid until
 * the next allocation on that engine); `dataSync()` elsewhere.
 */
export function readFloats(t: tf.Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`readFloats: expected a float32 tensor, got ${t.dtype}`);
  const heap = engineHeap();
  return heap ? heap.floats(t) : (t.dataSync() as Float32Array);
}

const modules = new Map<string, WasmModule | null>();
const instances = new WeakMap<WasmMemory, Map<string, unknown>>();
const compiledFor = new WeakMap<object, WasmModule>();

/** Whether `memory` is shared between threads (the threaded engine's heap, a shared `Arena`). */
export function isSharedMemory(memory: WasmMemory): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && (memory.buffer as unknown) instanceof SharedArrayBuffer;
}

/**
 * The exports of the kernel module `key` (built from `functions` once per process and kind of
 * memory, importing its memory as env.memory), instantiated once per `memory`; null where
 * WebAssembly SIMD is unavailable. Works for the engine's heap and for an `Arena`'s memory alike,
 * shared or not.
 */
export function kernelsOnHeap<T>(memory: WasmMemory, key: string, functions: () => { name: string; builder: FunctionBuilder }[]): T | null {
  let byKey = instances.get(memory);
  if (!byKey) instances.set(memory, (byKey = new Map()));
  if (byKey.has(key)) return byKey.get(key) as T | null;
  const shared = isSharedMemory(memory);
  const moduleKey = shared ? `${key}#shared` : key;
  let module = modules.get(moduleKey);
  if (module === undefined) {
    try {
      if (!wasmApi) throw new Error('no WebAssembly');
      module = new wasmApi.Module(emitModule(functions(), { kind: 'imported', maxPages: 65536, shared }));
    } catch {
      module = null;
    }
    modules.set(moduleKey, module);
  }
  let exports: T | null = null;
  if (module) {
    try {
      // A plain object (instance exports are frozen), so that tests can observe which path ran.
      exports = { ...new wasmApi!.Instance(module, { env: { memory } }).exports } as T;
      compiledFor.set(exports as object, module);
    } catch {
      exports = null;
    }
  }
  byKey.set(key, exports);
  return exports;
}

/**
 * The compiled module and this thread's exports of kernel module `key` on `memory` (see
 * `kernelsOnHeap`), for running the same kernels on other threads; undefined where they cannot run.
 */
export function kernelModule(
  memory: WasmMemory,
  key: string,
  functions: () => { name: string; builder: FunctionBuilder }[],
): { module: WasmModule; exports: Record<string, unknown> } | undefined {
  const exports = kernelsOnHeap<Record<string, unknown>>(memory, key, functions);
  const module = exports ? compiledFor.get(exports) : undefined;
  return exports && module ? { module, exports } : undefined;
}
