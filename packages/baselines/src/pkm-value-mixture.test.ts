// valueMixture with an index tensor (the device path) against valueMixture with host indices, each
// on a HostExpertTable on the test engine (which reads the index tensor there): the same read,
// weight gradient and summed value-row gradient; and its checks of the indices. On a DeviceExpertTable
// this path runs in pkm.webgpu.test.ts (the PKM layer on webgpu against the cpu engine).
// Axes: T tokens, R slots per token, D model width, N memory slots.
import * as tf from '@tensorflow/tfjs-core';
import { HostExpertTable, RowSparseGrad } from '@peer/expert-store';
import { expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { valueMixture } from './pkm-value-mixture.js';

const rng = testRng();

describe('valueMixture with an index tensor (the device path)', () => {
  it('reads, differentiates and sums value-row gradients as the host path does', async () => {
    const [T, R, D, N] = [5, 4, 6, 7];
    const values = Float32Array.from(rng.normals(N * D));
    const w = Float32Array.from(rng.normals(T * R));
    const dy = Float32Array.from(rng.normals(T * D));
    const slots = Int32Array.from({ length: T * R }, () => rng.int(N));
    const loss = (read: (weights: tf.Tensor2D) => tf.Tensor2D) => (weights: tf.Tensor) => tf.sum(tf.mul(read(weights as tf.Tensor2D), tf.tensor2d(dy, [T, D])));

    const host = HostExpertTable.fromEntry({ name: 'values', dtype: 'F32', shape: [N, D], data: values.slice() });
    const hostGrad = new RowSparseGrad(host);
    const [hostY, hostDw] = tf.tidy(() => {
      const read = (weights: tf.Tensor2D) => valueMixture(weights, slots, host, hostGrad);
      return [read(tf.tensor2d(w, [T, R])), tf.grad(loss(read))(tf.tensor2d(w, [T, R]))].map((t) => Float32Array.from(t.dataSync()));
    });
    const dense = (grad: RowSparseGrad) => {
      const out = new Float32Array(N * D);
      grad.uniqueRows().forEach((row, s) => out.set(grad.rowGrads().subarray(s * D, (s + 1) * D), row * D));
      return out;
    };
    const hostDense = dense(hostGrad);

    const device = HostExpertTable.fromEntry({ name: 'values', dtype: 'F32', shape: [N, D], data: values.slice() });
    const deviceGrad = new RowSparseGrad(device);
    const indices = tf.tensor2d(slots, [T, R], 'int32');
    const read = (weights: tf.Tensor2D) => valueMixture(weights, indices, device, deviceGrad);
    const [y, dw] = tf.tidy(() => [read(tf.tensor2d(w, [T, R])), tf.grad(loss(read))(tf.tensor2d(w, [T, R]))]);
    expectClose(await y!.data(), hostY!, { rtol: 1e-5, atol: 1e-6, label: `y, seed ${rng.seed}` });
    expectClose(await dw!.data(), hostDw!, { rtol: 1e-5, atol: 1e-6, label: `dw, seed ${rng.seed}` });
    expectClose(dense(deviceGrad), hostDense, { rtol: 1e-5, atol: 1e-6, label: `value rows, seed ${rng.seed}` });
    await expectNoLeaks(() => tf.tidy(() => void tf.grad(loss(read))(tf.tensor2d(w, [T, R]))), { label: 'valueMixture (index tensor)' });

    expect(() => valueMixture(tf.zeros([T, R]) as tf.Tensor2D, tf.zeros([T, R]), device, deviceGrad)).toThrow('valueMixture: indices must be int32, got float32');
    expect(() => valueMixture(tf.zeros([T, R]) as tf.Tensor2D, tf.zeros([T], 'int32'), device, deviceGrad)).toThrow(`valueMixture: ${T} indices for weights of shape [${T}, ${R}], expected ${T * R}`);
    tf.dispose([y!, dw!, indices]);
    device.dispose();
    host.dispose();
  });
});
