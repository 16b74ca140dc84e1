import { measureMatMulRate, webgpuAdapterInfo, type WebgpuAdapterInfo } from '@peer/backend';
import { createRequire } from 'node:module';
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

export async function doctor(options: { backend: string }): Promise<void> {
  console.log(`node ${process.version} (${process.platform}-${process.arch})`);
  for (const [name, version] of Object.entries(packageVersions())) console.log(`${name} ${version}`);
  const choice = await startEngine(options.backend);
  console.log(`backend: ${choice.backend} via ${choice.provider}`);
  for (const s of choice.skipped) console.log(`  skipped ${s.backend}: ${s.reason}`);
  if (choice.fixes.length) console.log(`  wasm fixes: ${choice.fixes.join(', ')}`);
  const adapter = choice.backend === 'webgpu' ? webgpuAdapterInfo() : undefined;
  if (adapter) for (const line of adapterLines(adapter)) console.log(line);
  const rate = await measureMatMulRate(512, 5);
  // Software adapters run at a fraction of a GFLOP/s: keep two significant digits there.
  const gflops = rate.gflops < 1 ? rate.gflops.toPrecision(2) : rate.gflops.toFixed(1);
  console.log(`matMul ${rate.size}^3: ${gflops} GFLOP/s (median of ${rate.repeats})`);
}
