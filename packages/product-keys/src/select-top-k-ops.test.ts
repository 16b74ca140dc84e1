// The device engines' selection (tfjs ops only) against the JS selection of the host engines, on
// the engine the tests run on: the same packed scores and sub-key indices, bit for bit.
// Axes: T tokens, h heads, H' key sets, n = sqrt(N) sub-keys per half, dk key width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { forceTensorTopK, selectTopK } from './select-top-k.js';

const rng = testRng();

function problem(T: number, h: number, sets: number, sqrtN: number, dk: number) {
  return {
    q: tf.tensor3d(Float32Array.from(rng.normals(T * h * 2 * dk)), [T, h, 2 * dk]),
    c1T: tf.tensor3d(Float32Array.from(rng.normals(sets * dk * sqrtN)), [sets, dk, sqrtN]),
    c2T: tf.tensor3d(Float32Array.from(rng.normals(sets * dk * sqrtN)), [sets, dk, sqrtN]),
  };
}

async function select(useOps: boolean, p: ReturnType<typeof problem>, plan: Parameters<typeof selectTopK>[3]): Promise<Float32Array> {
  forceTensorTopK(useOps);
  const packed = selectTopK(p.q, p.c1T, p.c2T, plan);
  try {
    return (await packed.data()) as Float32Array;
  } finally {
    packed.dispose();
  }
}

describe('selectTopK with tfjs ops (the device path)', () => {
  afterEach(() => forceTensorTopK(false));

  it.each([
    { label: 'per-head keys, one chunk', T: 7, h: 3, shared: false, sqrtN: 11, dk: 4, k: 5, chunk: 7 },
    { label: 'shared keys, chunks of 3', T: 8, h: 2, shared: true, sqrtN: 9, dk: 6, k: 9, chunk: 3 },
    { label: 'one head, k = 1', T: 5, h: 1, shared: false, sqrtN: 16, dk: 8, k: 1, chunk: 2 },
  ])('equals the JS selection bit for bit: $label', async ({ T, h, shared, sqrtN, dk, k, chunk }) => {
    const p = problem(T, h, shared ? 1 : h, sqrtN, dk);
    const plan = { tokens: T, heads: h, dimKey: dk, sqrtN, k, chunkTokens: chunk };
    const js = await select(false, p, plan);
    const ops = await select(true, p, plan);
    expect(ops.length).toBe(3 * T * h * k);
    expect(Array.from(ops), `seed ${rng.seed}`).toEqual(Array.from(js));
    tf.dispose([p.q, p.c1T, p.c2T]);
  });

  it('returns an empty selection for no tokens and leaks nothing', async () => {
    const p = problem(6, 2, 2, 8, 4);
    const plan = { tokens: 6, heads: 2, dimKey: 4, sqrtN: 8, k: 3, chunkTokens: 4 };
    forceTensorTopK(true);
    await expectNoLeaks(() => tf.dispose(selectTopK(p.q, p.c1T, p.c2T, plan)), { label: 'selectTopKOps' });
    const empty = selectTopK(tf.zeros([0, 2, 8]) as tf.Tensor3D, p.c1T, p.c2T, { ...plan, tokens: 0 });
    expect(empty.shape).toEqual([3, 0, 2, 3]);
    tf.dispose([empty, p.q, p.c1T, p.c2T]);
  });
});
