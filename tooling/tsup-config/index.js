// The single place that knows how @peer libraries are bundled: ESM + CJS + declarations.
// tsup is unmaintained upstream; replacing it means changing this file only.
import { defineConfig } from 'tsup';

/** @param {import('./index.d.ts').PackageBuildOptions} [options] */
export function definePackageConfig(options = {}) {
  return defineConfig({
    entry: options.entry ?? ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
    // Packages with several entries (a main one and subpaths such as ./tf-layers) share their modules
    // through chunks: bundled twice, a class would exist twice and `instanceof` would fail between them.
    splitting: options.splitting ?? false,
    // import.meta.url works in the CJS output too.
    shims: true,
    treeshake: false,
    // The wasm engine finds its .wasm files next to its own module: never bundle it, nor any
    // tfjs package (kernel and gradient registries are process-global).
    external: [/^@tensorflow\//, ...(options.external ?? [])],
    banner: options.banner,
  });
}
