import { definePackageConfig } from '@peer/tsup-config';

// Three entries: the root (engine choice, fixes, ops), `@peer/backend/wasm`, the one place that
// knows the wasm engine's internals (heap view, arenas, the module emitter), and
// `@peer/backend/webgpu` (custom WGSL programs on the webgpu engine).
export default definePackageConfig({ entry: { index: 'src/index.ts', wasm: 'src/wasm.ts', webgpu: 'src/webgpu.ts' } });
