// The wasm engine's heap as a place to run our own WebAssembly SIMD kernels in place: its memory
// object, the byte offset of a tensor's data, and outputs allocated on it. These are internals of
// @tensorflow/tfjs-backend-wasm 4.x (BackendWasm.wasm.asm.memory, dataIdMap, makeOutput), checked
// at every use: where any is missing, `engineHeap` returns undefined and callers take their
// portable path.
import * as tf from '@tensorflow/tfjs-core';
import { emitModule, wasmApi, type FunctionBuilder, type WasmMemory } from '@peer/backend';

interface WasmEngine {
  wasm?: { asm?: { memory?: WasmMemory } };
  dataIdMap?: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput?(shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
  disposeData(dataId: object): void;
}

export interface EngineHeap {
  memory: WasmMemory;
  /** Byte offset of a tensor's data on the heap. */
  offsetOf(t: { dataId: object }): number;
  /** A new uninitialized tensor on the heap (the caller owns it). */
  output(shape: number[], dtype: 'float32' | 'int32'): tf.Tensor;
}

/** The wasm engine's heap, or undefined on other engines or another tfjs-backend-wasm layout. */
export function engineHeap(): EngineHeap | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const engine = tf.backend() as unknown as WasmEngine;
  const memory = engine.wasm?.asm?.memory;
  const map = engine.dataIdMap;
  const makeOutput = engine.makeOutput;
  if (!memory || !map || typeof makeOutput !== 'function') return undefined;
  return {
    memory,
    offsetOf: (t) => {
      const at = map.get(t.dataId)?.memoryOffset;
      if (at === undefined) throw new Error('engineHeap: tensor is not on the wasm heap');
      return at;
    },
    output: (shape, dtype) => tf.engine().makeTensorFromTensorInfo(makeOutput.call(engine, shape, dtype)),
  };
}

const instances = new WeakMap<WasmMemory, Map<string, unknown>>();

/**
 * The exports of a module of `functions` importing `memory` as env.memory, built once per memory and
 * `key`; null where WebAssembly SIMD is unavailable.
 */
export function kernelsOnHeap<T>(memory: WasmMemory, key: string, functions: () => { name: string; builder: FunctionBuilder }[]): T | null {
  let byKey = instances.get(memory);
  if (!byKey) instances.set(memory, (byKey = new Map()));
  if (byKey.has(key)) return byKey.get(key) as T | null;
  let exports: T | null;
  try {
    if (!wasmApi) throw new Error('no WebAssembly');
    const module = new wasmApi.Module(emitModule(functions(), { kind: 'imported', maxPages: 65536 }));
    exports = new wasmApi.Instance(module, { env: { memory } }).exports as unknown as T;
  } catch {
    exports = null;
  }
  byKey.set(key, exports);
  return exports;
}
