import { definePackageConfig } from '@peer/tsup-config';

// Three entries: the root (engine choice, fixes, ops), `@peer/backend/wasm`, the one place that
// knows the wasm engine's internals (heap view, arenas, the module emitter), and
// `@peer/backend/webgpu` (custom WGSL programs on the webgpu engine). They share their modules
// through chunks: the kernel pool that `initBackend` starts must be the one `kernelPool()` of the
// wasm entry returns, and the running webgpu engine the one the device programs run on.
export default definePackageConfig({ entry: { index: 'src/index.ts', wasm: 'src/wasm.ts', webgpu: 'src/webgpu.ts' }, splitting: true });
