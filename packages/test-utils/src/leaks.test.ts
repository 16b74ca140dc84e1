import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectNoLeaks } from './leaks.js';

describe('expectNoLeaks', () => {
  it('detects a leaked tensor', async () => {
    const kept: tf.Tensor[] = [];
    await expect(expectNoLeaks(() => void kept.push(tf.scalar(1)), { label: 'leaky' })).rejects.toThrow(
      /^leaky tensor leak: 1 tensors more after call 1/,
    );
    tf.dispose(kept);
  });

  it('passes a tidy function and returns its result; warm-up state is allowed', async () => {
    const x = tf.ones([4, 4]);
    let slot: tf.Tensor | undefined;
    const result = await expectNoLeaks(() => {
      // Lasting state created on the first (warm-up) call only, like optimizer slots.
      slot ??= tf.zeros([4]);
      return tf.tidy(() => tf.sum(tf.matMul(x, x)).dataSync()[0]);
    });
    expect(result).toBe(64);
    tf.dispose([x, slot!]);
  });

  it('awaits async functions', async () => {
    await expect(
      expectNoLeaks(async () => {
        await new Promise((r) => setTimeout(r, 1));
        tf.scalar(2);
      }, { warmup: 0 }),
    ).rejects.toThrow(/tensor leak/);
  });
});
