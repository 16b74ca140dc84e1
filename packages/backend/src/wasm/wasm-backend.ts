// The slice of the wasm engine's backend object that the kernel fixes and the engine heap view
// (wasm-memory/engine-heap.ts) use, and the one way they
// replace a registered kernel. The engine's own types need emscripten typings; these few members
// are stable across tfjs 4.x.
import * as tf from '@tensorflow/tfjs-core';
import type { DataType, KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmMemory } from '../wasm-emitter/wasm-api.js';

export interface WasmTensorData {
  id: number;
  /** Byte offset into the wasm heap. */
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
}

/** The emscripten module's members used here (tfjs 4.22's wasm build). */
export interface WasmModule {
  HEAPU8: Uint8Array;
  /** The instance's exports; `memory` is the heap's WebAssembly.Memory (read through `engineHeap`). */
  asm?: { memory?: WasmMemory };
  /** The heap's memory where the module imports it rather than exporting it (the threaded build: shared). */
  wasmMemory?: WasmMemory;
  /** Wraps an exported C function; 'array' arguments are Uint8Arrays copied onto the stack. */
  cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
  tfjs: {
    /** Tells the C side that tensor `id` has `size` elements at byte `memoryOffset` (no allocation). */
    registerTensor(id: number, size: number, memoryOffset: number): void;
    /** Forgets tensor `id` on the C side and runs its disposal callbacks (cached XNNPACK operators); frees nothing. */
    disposeData(id: number): void;
  };
}

export interface WasmBackend {
  wasm: WasmModule;
  /** The next tensor id; the C side and the JS data map share this one counter. */
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  /** Allocates on the heap (not zeroed); may grow the heap, which detaches earlier views. */
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  readSync(dataId: object): ArrayLike<number>;
  incRef(dataId: object): void;
  disposeData(dataId: object): boolean;
}

export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: WasmBackend;
  attrs: NamedAttrMap;
}

/** A view of the whole heap as float32 words. Take it only after the last allocation of a kernel. */
export function heapF32(backend: WasmBackend): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer);
}

/** Byte offset of a tensor's data on the heap. */
export function byteOffset(backend: WasmBackend, info: Pick<TensorInfo, 'dataId'>): number {
  const data = backend.dataIdMap.get(info.dataId);
  if (!data) throw new Error('wasm kernel fix: tensor data is not on the wasm engine');
  return data.memoryOffset;
}

/** Word offset (float32/int32 elements) of a tensor's data on the heap. */
export function wordOffset(backend: WasmBackend, info: TensorInfo): number {
  // malloc aligns to at least 8 bytes, so 4-byte elements start on a word boundary.
  return byteOffset(backend, info) >>> 2;
}

/** Runs a kernel registered for wasm (looked up per call, so it sees later overrides too). */
export function runWasmKernel(name: string, inputs: NamedTensorInfoMap, backend: WasmBackend, attrs: NamedAttrMap = {}): TensorInfo {
  const kernel = tf.getKernel(name, 'wasm');
  if (!kernel) throw new Error(`wasm kernel '${name}' is not registered`);
  return kernel.kernelFunc({ inputs, backend, attrs }) as TensorInfo;
}

export interface WasmKernelFix {
  /** Human-readable fix name reported by `initBackend`. */
  name: string;
  kernelName: string;
  /** Builds the new kernel; `original` is the built-in kernel it replaces (if any). */
  kernelFunc(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo | TensorInfo[];
}

// Marks our kernel configs so that installing twice (or from both the ESM and CJS builds) is a no-op.
const FIXED = Symbol.for('@peer/backend/wasm-fix');

interface FixedKernelConfig extends KernelConfig {
  [FIXED]?: { fix: string; original: KernelConfig | undefined };
}

/** Replaces the wasm kernel with the fix's; returns false if it was already installed. */
export function installFix(fix: WasmKernelFix): boolean {
  const current = tf.getKernel(fix.kernelName, 'wasm') as FixedKernelConfig | undefined;
  if (current?.[FIXED]) return false;
  const config: FixedKernelConfig = {
    kernelName: fix.kernelName,
    backendName: 'wasm',
    kernelFunc: fix.kernelFunc(current?.kernelFunc) as unknown as KernelFunc,
    // setBackend re-runs every setupFunc; the original's prepares the wasm functions we delegate to.
    setupFunc: current?.setupFunc,
    disposeFunc: current?.disposeFunc,
    [FIXED]: { fix: fix.name, original: current },
  };
  if (current) tf.unregisterKernel(fix.kernelName, 'wasm');
  tf.registerKernel(config);
  return true;
}

/** Puts the built-in kernel back (or removes a kernel wasm did not have); returns false if the fix was not installed. */
export function uninstallFix(fix: WasmKernelFix): boolean {
  const current = tf.getKernel(fix.kernelName, 'wasm') as FixedKernelConfig | undefined;
  const marker = current?.[FIXED];
  if (!marker) return false;
  tf.unregisterKernel(fix.kernelName, 'wasm');
  if (marker.original) tf.registerKernel(marker.original);
  return true;
}

/** Whether the named kernel currently runs a fix. */
export function isFixInstalled(kernelName: string): boolean {
  return Boolean((tf.getKernel(kernelName, 'wasm') as FixedKernelConfig | undefined)?.[FIXED]);
}
