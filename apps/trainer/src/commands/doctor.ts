import { initBackend, measureMatMulRate, webgpuAdapterInfo, type WebgpuAdapterInfo } from '@peer/backend';
import { createRequire } from 'node:module';
import { engineThreads, threadsText } from '../run/engine-threads.js';
import { startEngine } from '../run/start-engine.js';

const PACKAGES = [
  '@peer/backend',
  '@peer/product-keys',
  '@peer/expert-store',
  '@peer/feed-forward',
  '@peer/layer',
  '@peer/baselines',
  '@peer/data',
  '@peer/model',
  '@tensorflow/tfjs-core',
  '@tensorflow/tfjs-backend-wasm',
  '@tensorflow/tfjs-backend-webgpu',
  'webgpu',
];

const GIB = 2 ** 30;

/** The adapter's identity and the limits that decide how big one table shard can be. */
export function adapterLines(info: WebgpuAdapterInfo): string[] {
  const bytes = (n: number) => `${n} bytes (${(n / GIB).toFixed(2)} GiB)`;
  return [
    `  adapter: vendor ${info.vendor || '?'}, architecture ${info.architecture || '?'}, description ${info.description || info.device || '?'}`,
    `  fallback (software) adapter: ${info.isFallbackAdapter ? 'yes' : 'no'}`,
    `  maxStorageBufferBindingSize: ${bytes(info.maxStorageBufferBindingSize)}`,
    `  maxBufferSize: ${bytes(info.maxBufferSize)}`,
  ];
}

/** The versions of the packages this app runs with ('missing' when one cannot be resolved). */
export function packageVersions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const out: Record<string, string> = {};
  for (const name of PACKAGES) {
    try {
      out[name] = (require(`${name}/package.json`) as { version: string }).version;
    } catch {
      out[name] = 'missing';
    }
  }
  return out;
}

function formatRate(gflops: number): string {
  // Software adapters run at a fraction of a GFLOP/s: keep two significant digits there.
  return gflops < 1 ? gflops.toPrecision(2) : gflops.toFixed(1);
}

export async function doctor(options: { backend: string; threads?: number }): Promise<void> {
  console.log(`node ${process.version} (${process.platform}-${process.arch})`);
  for (const [name, version] of Object.entries(packageVersions())) console.log(`${name} ${version}`);
  const threads = engineThreads(options.threads, undefined);
  const choice = await startEngine(options.backend, threads);
  console.log(`backend: ${choice.backend} via ${choice.provider}${threadsText(choice)}`);
  for (const s of choice.skipped) console.log(`  skipped ${s.backend}: ${s.reason}`);
  if (choice.fixes.length) console.log(`  wasm fixes: ${choice.fixes.join(', ')}`);
  const adapter = choice.backend === 'webgpu' ? webgpuAdapterInfo() : undefined;
  if (adapter) for (const line of adapterLines(adapter)) console.log(line);
  const rate = await measureMatMulRate(512, 5);
  const running = choice.threads ?? 1;
  if (choice.backend !== 'wasm' || running === 1) {
    console.log(`matMul ${rate.size}^3: ${formatRate(rate.gflops)} GFLOP/s (median of ${rate.repeats})`);
    return;
  }
  // The same product on one thread: restart the engine single-threaded (no tensors are alive here).
  await initBackend({ backend: 'wasm', threads: 1, log: false });
  const single = await measureMatMulRate(512, 5);
  console.log(
    `matMul ${rate.size}^3: ${formatRate(rate.gflops)} GFLOP/s with ${running} threads, ${formatRate(single.gflops)} with 1 ` +
      `(${(rate.gflops / single.gflops).toFixed(2)}x; median of ${rate.repeats})`,
  );
}
