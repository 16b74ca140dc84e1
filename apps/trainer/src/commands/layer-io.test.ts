// layer-io round trip on a small PEER layer: the files it writes equal running the layer directly
// (forward y, and the input gradient dx of sum(y * dy)); --set reaches the layer; bad files and
// settings are usage errors naming the flag and the file.
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, writeSafetensors } from '@peer/expert-store';
import { importPeerPytorch, PeerLayer, PYTORCH_NAMES, savePeerPytorch } from '@peer/layer';
import { expectClose, testRng } from '@peer/test-utils';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { layerIoCommand } from './layer-io.js';

const B = 2;
const S = 5;
const D = 16;
let dir: string;
let layer: PeerLayer;
let x: Float32Array;
let dy: Float32Array;
const file = (name: string) => join(dir, name);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'peer-layer-io-'));
  layer = new PeerLayer({ dim: D, numExperts: 64, heads: 2, topK: 4, dimKey: 8, seed: 11 });
  savePeerPytorch(layer, file('w.safetensors'));
  const rng = testRng(5);
  x = Float32Array.from(rng.normals(B * S * D, 1));
  dy = Float32Array.from(rng.normals(B * S * D, 1));
  writeSafetensors(file('x.safetensors'), [{ name: 'x', dtype: 'F32', shape: [B, S, D], data: x }]);
  writeSafetensors(file('dy.safetensors'), [{ name: 'dy', dtype: 'F32', shape: [B, S, D], data: dy }]);
  writeSafetensors(file('x-wide.safetensors'), [{ name: 'x', dtype: 'F32', shape: [3, D + 1], data: new Float32Array(3 * (D + 1)) }]);
});

afterAll(() => layer.dispose());

/** y and dx of `l` run directly (batch statistics, as layer-io's default training mode). */
function direct(l: PeerLayer): { y: Float32Array; dx: Float32Array } {
  const xT = tf.tensor3d(x, [B, S, D]);
  const dyT = tf.tensor3d(dy, [B, S, D]);
  const y = tf.tidy(() => l.apply(xT, { training: true }).y.dataSync() as Float32Array);
  const dx = tf.tidy(() => tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(l.apply(xi as tf.Tensor3D, { training: true }).y, dyT)))(xT).dataSync() as Float32Array);
  l.zeroSparseGrads();
  tf.dispose([xT, dyT]);
  return { y, dx };
}

describe('peer-train layer-io', () => {
  it('forward: y equals the layer run directly', async () => {
    const result = await layerIoCommand({ weights: file('w.safetensors'), input: file('x.safetensors'), output: file('y.safetensors') });
    expect(result.shape).toEqual([B, S, D]);
    const y = readSafetensors(file('y.safetensors')).get('y')!;
    expect(y.shape).toEqual([B, S, D]);
    expectClose(y.data as Float32Array, direct(layer).y, { rtol: 1e-5, atol: 1e-6, label: 'y' });
  });

  it('backward: dx equals the gradient of sum(y * dy); every weight gets a gradient under its name', async () => {
    await layerIoCommand({
      weights: file('w.safetensors'),
      input: file('x.safetensors'),
      output: file('y2.safetensors'),
      gradOutput: file('dy.safetensors'),
      gradsOut: file('grads.safetensors'),
    });
    const grads = readSafetensors(file('grads.safetensors'));
    const ref = direct(layer);
    expectClose(grads.get('dx')!.data as Float32Array, ref.dx, { rtol: 1e-4, atol: 1e-6, label: 'dx' });
    expectClose(readSafetensors(file('y2.safetensors')).get('y')!.data as Float32Array, ref.y, { rtol: 1e-5, atol: 1e-6, label: 'y' });
    const weights = readSafetensors(file('w.safetensors'));
    for (const name of [PYTORCH_NAMES.down, PYTORCH_NAMES.up, PYTORCH_NAMES.keys, PYTORCH_NAMES.queryWeight, PYTORCH_NAMES.normWeight, PYTORCH_NAMES.normBias]) {
      expect(grads.get(name)?.shape, name).toEqual(weights.get(name)!.shape);
    }
    // only the retrieved experts' rows of the tables have gradients
    const down = grads.get(PYTORCH_NAMES.down)!.data as Float32Array;
    const touchedRows = new Set<number>();
    down.forEach((v, i) => v !== 0 && touchedRows.add(Math.floor(i / D)));
    expect(touchedRows.size).toBeGreaterThan(0);
    expect(touchedRows.size).toBeLessThanOrEqual(B * S * 2 * 4);
  });

  it('--set reaches the layer (topK=2 gives the output of a top-2 layer with the same weights)', async () => {
    const result = await layerIoCommand({ weights: file('w.safetensors'), input: file('x.safetensors'), output: file('y3.safetensors'), set: ['topK=2'] });
    expect(result.config.topK).toBe(2);
    const top2 = importPeerPytorch(readSafetensors(file('w.safetensors')).arrays, { topK: 2 });
    try {
      expectClose(readSafetensors(file('y3.safetensors')).get('y')!.data as Float32Array, direct(top2).y, { rtol: 1e-5, atol: 1e-6, label: 'y top-2' });
    } finally {
      top2.dispose();
    }
  });

  it('bad input: one usage error naming the flag or the file', async () => {
    const run = (o: Partial<Parameters<typeof layerIoCommand>[0]>) =>
      layerIoCommand({ weights: file('w.safetensors'), input: file('x.safetensors'), output: file('out.safetensors'), ...o });
    await expect(run({ weights: file('none.safetensors') })).rejects.toThrow(/^--weights .*none\.safetensors: no such file$/);
    await expect(run({ input: dir })).rejects.toThrow(/^--input .*: not a file$/);
    await expect(run({ gradOutput: file('dy.safetensors') })).rejects.toThrow(/^--grad-output needs --grads-out/);
    await expect(run({ gradsOut: file('g.safetensors') })).rejects.toThrow(/^--grads-out needs --grad-output/);
    await expect(run({ set: ['topk=2'] })).rejects.toThrow(/^--set: invalid PEER layer config: topk = "2": unknown setting/);
    await expect(run({ set: ['topK=9'] })).rejects.toThrow(/^layer-io: invalid PEER layer config: topK = 9: must be at most sqrt\(numExperts\) = 8$/);
    await expect(run({ input: file('x-wide.safetensors') })).rejects.toThrow(/^layer-io: .*x-wide\.safetensors: 'x' has shape \[3, 17\], expected \[batch, seq, 16\] or \[tokens, 16\]$/);
    await expect(run({ input: file('w.safetensors') })).rejects.toThrow(/^layer-io: .*w\.safetensors: has no tensor named 'x'$/);
    await expect(run({ weights: file('none.safetensors') })).rejects.toBeInstanceOf(UsageError);
  });
});
