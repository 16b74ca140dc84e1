// Test-only: the same computation on the webgpu engine and on the cpu engine, compared. Results are
// read with `await data()` (dataSync throws on webgpu in Node); nothing crosses engines.
import { initBackend } from '@peer/backend';
import * as tf from '@tensorflow/tfjs-core';

export type Out = Float32Array | Int32Array;

/** Starts webgpu on any adapter (SwiftShader in CI) and leaves it active. */
export async function startWebgpu(): Promise<void> {
  await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
}

/** Runs `fn` on `engine` inside a tidy, reads every output asynchronously and frees it. */
export async function onEngine(engine: 'webgpu' | 'cpu', fn: () => tf.Tensor[]): Promise<Out[]> {
  if (!(await tf.setBackend(engine))) throw new Error(`cannot switch to ${engine}`);
  const outs = tf.tidy(fn);
  try {
    return (await Promise.all(outs.map((t) => t.data()))) as Out[];
  } finally {
    tf.dispose(outs);
  }
}

/** max |a - b| / max(max |b|, 1e-30): the error relative to the reference's scale. */
export function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`scaledError: lengths ${a.length} and ${b.length}`);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-30);
}
