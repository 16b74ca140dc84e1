import * as tf from '@tensorflow/tfjs-core';

export interface MatMulRate {
  /** Median GFLOP/s over the timed repeats (2*n^3 FLOPs per product). */
  gflops: number;
  size: number;
  repeats: number;
}

/**
 * Times an n x n x n float32 matMul on the current engine: one warm-up, then the median of
 * `repeats`. The trainer reports model FLOPs utilization against this rate.
 */
export async function measureMatMulRate(size = 512, repeats = 5): Promise<MatMulRate> {
  const a = tf.randomNormal([size, size]);
  const b = tf.randomNormal([size, size]);
  try {
    const times: number[] = [];
    for (let i = 0; i <= repeats; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
      if (i > 0) times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    const ms = times[Math.floor(times.length / 2)]!;
    return { gflops: (2 * size ** 3) / (ms * 1e6), size, repeats };
  } finally {
    a.dispose();
    b.dispose();
  }
}
