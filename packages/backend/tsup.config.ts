import { definePackageConfig } from '@peer/tsup-config';

// Two entries: the root (engine choice, fixes, ops) and `@peer/backend/wasm`, the one place that
// knows the wasm engine's internals (heap view, arenas, the module emitter).
export default definePackageConfig({ entry: { index: 'src/index.ts', wasm: 'src/wasm.ts' } });
