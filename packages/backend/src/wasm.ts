export {
  emitModule,
  F32,
  F64,
  FunctionBuilder,
  I32,
  I64,
  Op,
  rowLoop,
  V128,
  type ExportedFunction,
  type LoopStep,
  type ModuleMemory,
  type ValueType,
} from './wasm-emitter/wasm-emitter.js';
export { wasmApi, type WasmApi, type WasmMemory, type WasmModule } from './wasm-emitter/wasm-api.js';
export { engineHeap, isSharedMemory, kernelModule, kernelsOnHeap, readFloats, type EngineHeap } from './wasm-memory/engine-heap.js';
export { KernelPool, kernelPool, MAX_CALL_ARGS, MAX_POOL_CALLS, setKernelThreads, splitRange } from './wasm-memory/kernel-pool.js';
export { PASS_PARTS_PER_THREAD, passParts, runCalls, runPass, setPassPartsPerThread, type KernelModule } from './wasm-memory/pooled-pass.js';
export { Arena, ArenaArray, MAX_ARENA_BYTES, type ArenaArrayKind } from './wasm-memory/arena.js';
export { POOLED_MAT_MUL_MIN_ROWS, SMALL_MAT_MUL_MAX_B, SMALL_MAT_MUL_MAX_WORK, setSmallMatMulMaxWork } from './wasm/small-mat-mul.js';
export { POOLED_MAT_MUL_MIN_WORK, pooledBlockRows, setPooledMatMulMinWork } from './wasm/pooled-small-mat-mul.js';
export { ENGINE_POOL_THREADS, wasmEngineThreads } from './wasm/threaded-wasm.js';
export { POOLED_BINARY_MIN_SIZE, setPooledBinaryMinSize } from './wasm/pooled-binary.js';
export { POOLED_TRANSPOSE_MIN_SIZE, setPooledTransposeMinSize } from './wasm/blocked-transpose.js';
export { POOLED_ADAMW_MIN_SIZE, setPooledAdamwMinSize } from './wasm/fused-adamw.js';
export { useComposedAdamw } from './ops/adamw.js';
export { POOLED_GATED_ACTIVATION_MIN_SIZE, useHostGatedActivation } from './ops/gated-activation.js';
