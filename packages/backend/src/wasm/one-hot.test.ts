// I indices, D depth.
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { installWasmFixes, uninstallWasmFixes } from './install-wasm-fixes.js';
import { onEngine } from './engine-compare.test-util.js';
import { isFixInstalled } from './wasm-backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
  expect(isFixInstalled(tf.OneHot)).toBe(true);
});

/** out[i, d] = on if ids[i] = d else off, written plainly (an out-of-range index gives an all-off row). */
function refOneHot(ids: ArrayLike<number>, depth: number, on: number, off: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) for (let d = 0; d < depth; d++) out.push(ids[i] === d ? on : off);
  return out;
}

describe('OneHot on wasm', () => {
  for (const dtype of ['float32', 'int32'] as const) {
    it(`matches cpu and a plain reference for ${dtype} (2-D indices, out-of-range indices, non-default on/off values)`, async () => {
      const rng = testRng();
      const [rows, cols, depth] = [7, 9, 11];
      // About a fifth of the indices fall outside [0, depth), on both sides.
      const ids = Int32Array.from({ length: rows * cols }, () => rng.int(depth + 6) - 3);
      const [on, off] = dtype === 'float32' ? [rng.uniforms(1, 0.5, 2)[0]!, rng.uniforms(1, -1, 0)[0]!] : [5, -2];
      const run = () => tf.oneHot(tf.tensor2d(ids, [rows, cols], 'int32'), depth, on, off, dtype);
      const wasm = await onEngine<Float32Array | Int32Array>('wasm', run);
      const cpu = await onEngine<Float32Array | Int32Array>('cpu', run);
      const label = `seed ${rng.seed}`;
      expect(wasm, label).toBeInstanceOf(dtype === 'float32' ? Float32Array : Int32Array);
      expect(Array.from(wasm), label).toEqual(Array.from(cpu));
      // Float32 rounding of on/off values, as the output stores them.
      const expected = refOneHot(ids, depth, on, off).map((v) => (dtype === 'float32' ? Math.fround(v) : v));
      expect(Array.from(wasm), label).toEqual(expected);
      expect(ids.some((d) => d < 0) && ids.some((d) => d >= depth), label).toBe(true);
      await tf.setBackend('wasm');
      const out = run();
      expect(out.shape).toEqual([rows, cols, depth]);
      expect(out.dtype).toBe(dtype);
      out.dispose();
    });
  }

  it('defaults (on 1, off 0, int32) and float32 with the defaults give exact ones and zeros', async () => {
    await tf.setBackend('wasm');
    const ids = tf.tensor1d([2, 0, 3, -1, 1], 'int32');
    const expected = refOneHot([2, 0, 3, -1, 1], 3, 1, 0);
    const asInt = tf.oneHot(ids, 3);
    const asFloat = tf.oneHot(ids, 3, 1, 0, 'float32');
    expect(asInt.dtype).toBe('int32');
    expect(Array.from(asInt.dataSync())).toEqual(expected);
    expect(Array.from(asFloat.dataSync())).toEqual(expected);
    tf.dispose([ids, asInt, asFloat]);
  });

  it('fractional on/off values convert as on cpu: truncated for int32, rounded to float32, bytes for bool', async () => {
    const ids = Int32Array.from([1, 0, 4]);
    for (const dtype of ['int32', 'float32', 'bool'] as const) {
      const run = () => tf.oneHot(tf.tensor1d(ids, 'int32'), 3, 2.7, -1.5, dtype as 'int32');
      const wasm = await onEngine<Float32Array | Int32Array>('wasm', run);
      const cpu = await onEngine<Float32Array | Int32Array>('cpu', run);
      expect(Array.from(wasm), dtype).toEqual(Array.from(cpu));
    }
    const int = await onEngine<Int32Array>('wasm', () => tf.oneHot(tf.tensor1d(ids, 'int32'), 3, 2.7, -1.5, 'int32'));
    expect(Array.from(int)).toEqual([-1, 2, -1, 2, -1, -1, -1, -1, -1]);
  });

  it('writes every element: stale heap memory never shows through', async () => {
    await tf.setBackend('wasm');
    const [n, depth] = [64, 50];
    for (let round = 0; round < 5; round++) {
      // Free a block of the output's size full of non-zero values; the allocator hands it back.
      tf.fill([n, depth], 7 + round).dispose();
      const ids = tf.tensor1d(Int32Array.from({ length: n }, (_, i) => (i * 7) % (depth + 5)), 'int32');
      const out = tf.oneHot(ids, depth, 1, 0, 'float32');
      expect(Array.from(out.dataSync())).toEqual(refOneHot(ids.dataSync(), depth, 1, 0));
      tf.dispose([ids, out]);
    }
  });

  it('handles empty indices and leaks no tensors or data', async () => {
    await tf.setBackend('wasm');
    const empty = tf.oneHot(tf.tensor1d([], 'int32'), 4, 1, 0, 'float32');
    expect(empty.shape).toEqual([0, 4]);
    expect(empty.dataSync()).toHaveLength(0);
    empty.dispose();
    const ids = tf.tensor1d([1, 2, 0], 'int32');
    const dataIds = tf.engine().backend.numDataIds();
    await expectNoLeaks(() => tf.oneHot(ids, 3, 1, 0, 'float32').dispose());
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
    ids.dispose();
  });

  it('the built-in kernel labels int32 data as float32 (why the fix exists)', async () => {
    const run = () => tf.oneHot(tf.tensor1d([0, 2], 'int32'), 3, 1, 0, 'float32');
    try {
      uninstallWasmFixes();
      const builtIn = await onEngine<Float32Array>('wasm', run);
      // 1 stored as an int32 reads back as the float32 bit pattern 1.4e-45.
      expect(builtIn[0]).not.toBe(1);
    } finally {
      installWasmFixes();
    }
    expect(Array.from(await onEngine<Float32Array>('wasm', run))).toEqual([1, 0, 0, 0, 0, 1]);
  });
});
