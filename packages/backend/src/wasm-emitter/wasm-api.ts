// The few pieces of the WebAssembly JS API that the project's kernels use (they run modules built
// by wasm-emitter.ts), typed here once: the project compiles against ES2022 + Node types, which do
// not declare the WebAssembly namespace.

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export interface WasmModule {
  readonly __brand?: 'WebAssembly.Module';
}

export interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports?: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}

/** The host's WebAssembly API, or undefined where there is none. */
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
