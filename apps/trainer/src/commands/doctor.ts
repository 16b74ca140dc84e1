import { BackendUnavailableError, initBackend, measureMatMulRate, type BackendRequest } from '@peer/backend';
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';

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
];

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
  try {
    const choice = await initBackend({ backend: options.backend as BackendRequest, log: false });
    console.log(`backend: ${choice.backend} via ${choice.provider}`);
    for (const s of choice.skipped) console.log(`  skipped ${s.backend}: ${s.reason}`);
    if (choice.fixes.length) console.log(`  wasm fixes: ${choice.fixes.join(', ')}`);
  } catch (err) {
    if (err instanceof BackendUnavailableError) throw new UsageError(err.message, 1);
    throw err;
  }
  const rate = await measureMatMulRate(512, 5);
  console.log(`matMul ${rate.size}^3: ${rate.gflops.toFixed(1)} GFLOP/s (median of ${rate.repeats})`);
}
