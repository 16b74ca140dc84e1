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
export {
  ACTIVATIONS,
  activate,
  activateArray,
  activationDerivative,
  activationDerivativeArray,
  activationForward,
  activationWithCache,
  erfc,
  type Activation,
  type ActivationResult,
} from './ops/activation.js';
export { adamwUpdate, type AdamwStepOptions } from './ops/adamw.js';
export { columnSums } from './ops/column-sums.js';
export {
  gatedActivation,
  gatedActivationGrad,
  type GatedActivation,
  type GatedActivationGrad,
} from './ops/gated-activation.js';
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
export { webgpuAdapterInfo } from './webgpu/webgpu-engine.js';
export { SWIFTSHADER_HINT, webgpuSkipReason } from './webgpu/webgpu-test-gate.js';
export { makeReadable, onDevice } from './device.js';
export { loseDeviceForTesting, settleLoss, watchDeviceLoss, type DeviceLossWatch } from './device-lost.js';
export type { WebgpuAdapterInfo } from './webgpu/adapter-probe.js';
export { threadsUnsupported } from './wasm/threaded-wasm.js';
