import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { installWasmFixes, uninstallWasmFixes } from './install-wasm-fixes.js';
import { isFixInstalled } from './wasm-backend.js';
import { onEngine, scaledError } from './engine-compare.test-util.js';

const KERNELS = [
  tf.UnsortedSegmentSum,
  tf.BatchMatMul,
  tf._FusedMatMul,
  tf.GatherV2,
  tf.Transpose,
  tf.Slice,
  tf.Unpack,
  tf.SplitV,
  tf.StridedSlice,
  tf.Sum,
  tf.Max,
  tf.OneHot,
  tf.Add,
  tf.Sub,
  tf.Multiply,
  tf.Identity,
];

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});
afterAll(() => {
  installWasmFixes();
});

describe('installWasmFixes', () => {
  it('installs each fix once, however often it is called, and reports their names', () => {
    const first = installWasmFixes();
    const configs = KERNELS.map((k) => tf.getKernel(k, 'wasm'));
    const second = installWasmFixes();
    expect(second).toEqual(first);
    expect(first).toHaveLength(KERNELS.length);
    expect(first[0]).toBe('UnsortedSegmentSum');
    // Same registered objects: the second call did not wrap the fixes again.
    KERNELS.forEach((k, i) => expect(tf.getKernel(k, 'wasm')).toBe(configs[i]));
  });

  it('uninstallWasmFixes restores the very built-in kernels, and installing again replaces them', () => {
    installWasmFixes();
    uninstallWasmFixes();
    expect(tf.getKernel(tf.UnsortedSegmentSum, 'wasm')).toBeUndefined();
    for (const k of KERNELS.slice(1)) {
      expect(isFixInstalled(k)).toBe(false);
      expect(tf.getKernel(k, 'wasm')?.kernelFunc).toBeTypeOf('function');
    }
    const builtIn = tf.getKernel(tf.BatchMatMul, 'wasm');
    installWasmFixes();
    uninstallWasmFixes();
    expect(tf.getKernel(tf.BatchMatMul, 'wasm')).toBe(builtIn);
    installWasmFixes();
    KERNELS.forEach((k) => expect(isFixInstalled(k)).toBe(true));
  });

  it('initBackend({ wasmFixes: false }) runs the built-in kernels; the default puts the fixes back', async () => {
    const off = await initBackend({ backend: 'wasm', wasmFixes: false, log: false });
    expect(off.fixes).toEqual([]);
    expect(isFixInstalled(tf.BatchMatMul)).toBe(false);
    const on = await initBackend({ backend: 'wasm', log: false });
    expect(on.fixes).toHaveLength(KERNELS.length);
    expect(isFixInstalled(tf.BatchMatMul)).toBe(true);
  });

  it('without the fixes tf.grad through gather throws on wasm; with them it works', async () => {
    await tf.setBackend('wasm');
    const table = tf.randomNormal([8, 3]);
    const idx = tf.tensor1d([1, 1, 5], 'int32');
    const g = () => tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, idx)))(table).dataSync());
    uninstallWasmFixes();
    expect(g).toThrow(/UnsortedSegmentSum/);
    installWasmFixes();
    expect(Array.from(g())).toEqual([0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
    tf.dispose([table, idx]);
  });

  it('fixes the built-in batched _FusedMatMul bias (wrong without the fix, right with it)', async () => {
    const rng = testRng();
    const [bt, m, k, n] = [3, 5, 6, 4];
    const a = Float32Array.from(rng.normals(bt * m * k));
    const b = Float32Array.from(rng.normals(k * n));
    const bias = Float32Array.from(rng.uniforms(n, 1, 2));
    const run = () => tf.fused.matMul({ a: tf.tensor(a, [bt, m, k]), b: tf.tensor(b, [k, n]), bias: tf.tensor(bias, [n]) });
    const cpu = await onEngine<Float32Array>('cpu', run);
    uninstallWasmFixes();
    const builtIn = await onEngine<Float32Array>('wasm', run);
    installWasmFixes();
    const fixed = await onEngine<Float32Array>('wasm', run);
    expect(scaledError(builtIn, cpu)).toBeGreaterThan(1e-2);
    expect(scaledError(fixed, cpu)).toBeLessThanOrEqual(1e-4);
  });

  it('fixed kernels keep working after switching to cpu and back (setBackend re-runs kernel setup)', async () => {
    const rng = testRng();
    const a = Float32Array.from(rng.normals(7 * 5));
    const b = Float32Array.from(rng.normals(6 * 7));
    const run = () => tf.matMul(tf.tensor(a, [7, 5]), tf.tensor(b, [6, 7]), true, true);
    const first = await onEngine<Float32Array>('wasm', run);
    const cpu = await onEngine<Float32Array>('cpu', run);
    const again = await onEngine<Float32Array>('wasm', run);
    expect(Array.from(again)).toEqual(Array.from(first));
    expect(scaledError(again, cpu)).toBeLessThanOrEqual(1e-4);
  });
});
