import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `fn` (after `warmup` untimed calls that may create lasting state, e.g. optimizer slots) and
 * throws if the number of live tensors changed. Returns what `fn` returned last.
 */
export async function expectNoLeaks<T>(fn: () => T | Promise<T>, options: { warmup?: number; repeats?: number; label?: string } = {}): Promise<T> {
  const { warmup = 1, repeats = 2, label = '' } = options;
  let result!: T;
  for (let i = 0; i < warmup; i++) result = await fn();
  const before = tf.memory().numTensors;
  for (let i = 0; i < repeats; i++) {
    result = await fn();
    const now = tf.memory().numTensors;
    if (now !== before) {
      throw new Error(`${label} tensor leak: ${now - before} tensors more after call ${i + 1} (${before} -> ${now})`);
    }
  }
  return result;
}
