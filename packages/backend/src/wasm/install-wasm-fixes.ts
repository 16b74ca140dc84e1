// Registers, once, the wasm kernels that make training usable (see the package README). Each fix
// lives in its own file; they replace kernels for the 'wasm' engine only.
import { gatherRowsFix } from './gather-rows.js';
import { oneHotFix } from './one-hot.js';
import { maxFix, sumFix } from './outer-axis-reduce.js';
import { addFix, multiplyFix, subFix } from './pooled-binary.js';
import { sharedIdentityFix } from './shared-identity.js';
import { sliceFix, splitVFix, stridedSliceFix, unpackFix } from './slice-kernels.js';
import { batchMatMulFix, fusedMatMulFix } from './transpose-first-mat-mul.js';
import { transposeFix } from './transpose.js';
import { unsortedSegmentSumFix } from './unsorted-segment-sum.js';
import { installFix, isFixInstalled, uninstallFix, type WasmKernelFix } from './wasm-backend.js';

const FIXES: readonly WasmKernelFix[] = [
  unsortedSegmentSumFix,
  batchMatMulFix,
  fusedMatMulFix,
  gatherRowsFix,
  transposeFix,
  sliceFix,
  unpackFix,
  splitVFix,
  stridedSliceFix,
  sumFix,
  maxFix,
  oneHotFix,
  addFix,
  subFix,
  multiplyFix,
  sharedIdentityFix,
];

/** Installs the wasm kernel fixes (idempotent) and returns their names. */
export function installWasmFixes(): string[] {
  for (const fix of FIXES) installFix(fix);
  return FIXES.filter((f) => isFixInstalled(f.kernelName)).map((f) => f.name);
}

/** Restores the built-in wasm kernels (for benchmarks and tests that compare against them). */
export function uninstallWasmFixes(): void {
  for (const fix of FIXES) uninstallFix(fix);
}
