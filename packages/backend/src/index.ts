export {
  BACKEND_NAMES,
  BackendUnavailableError,
  currentBackend,
  initBackend,
  type BackendChoice,
  type BackendName,
  type BackendRequest,
  type InitBackendOptions,
  type SkippedBackend,
} from './init-backend.js';
export { formatValue, type FormatValueOptions } from './format-value.js';
export { stopGradient } from './stop-gradient.js';
export { columnSums } from './ops/column-sums.js';
export { linear } from './ops/linear.js';
export {
  DEFAULT_HEAP_BUDGET_BYTES,
  HeapBudgetError,
  heapStats,
  installHeapGuard,
  setHeapBudget,
  type HeapStats,
} from './heap-guard.js';
export { installWasmFixes, uninstallWasmFixes } from './wasm/install-wasm-fixes.js';
export { Rng } from './rng.js';
export { measureMatMulRate, type MatMulRate } from './matmul-rate.js';
export {
  emitModule,
  F32,
  FunctionBuilder,
  I32,
  V128,
  type ExportedFunction,
  type LoopStep,
  type ModuleMemory,
  type ValueType,
} from './wasm-emitter/wasm-emitter.js';
export { wasmApi, type WasmApi, type WasmMemory, type WasmModule } from './wasm-emitter/wasm-api.js';
