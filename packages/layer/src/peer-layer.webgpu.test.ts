// PeerLayer on the webgpu engine (SwiftShader in CI) against the same layer on the cpu engine: same
// seed, same inputs; outputs, input gradients and the dense variables' gradients agree, the running
// statistics move alike, and nothing is read synchronously (dataSync throws on webgpu in Node).
// Tiny sizes: software Vulkan is slow.
// Axes: B batch, S sequence, D model width.
// The tables are expert-store's DeviceExpertTable (the layer's factory picks it on webgpu).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PeerLayerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';
import { referencePeer } from './peer-reference.test-util.js';
import { referenceConfig, referenceParams, separatedInput } from './layer-params.test-util.js';


const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu PeerLayer tests skipped: ${skip}`);
const rng = testRng();
const TOL = 1e-4;
const TINY: PeerLayerConfig = { dim: 8, numExperts: 16, heads: 2, topK: 2, dimKey: 4 };

function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-30);
}

/** y, dx and every trainable variable's gradient of sum(y * r), then the running statistics, read asynchronously. */
async function trainStep(engine: 'webgpu' | 'cpu', config: PeerLayerConfig, x: Float32Array, r: Float32Array, shape: [number, number, number]): Promise<Float32Array[]> {
  await tf.setBackend(engine);
  const layer = new PeerLayer(config);
  try {
    const outs = tf.tidy(() => {
      const xt = tf.tensor3d(x, shape);
      const rt = tf.tensor3d(r, shape);
      const vars = layer.trainableVariables();
      const loss = (input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input as tf.Tensor3D, { training: true }).y, rt)) as tf.Scalar;
      // Three passes, each drawing its own dropout masks from the layer's stream, alike on both engines.
      const { y } = layer.apply(xt, { training: true });
      const dx = tf.grad(loss)(xt);
      const { grads } = tf.variableGrads(() => loss(xt), vars);
      return [y, dx, ...vars.map((v) => grads[v.name]!), ...layer.queryNorm.variables().map((v) => tf.clone(v))];
    });
    const values = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    tf.dispose(outs);
    return values;
  } finally {
    layer.dispose();
  }
}

describe.skipIf(skip !== undefined)(`PeerLayer on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hostEngine = '';
  beforeAll(async () => {
    hostEngine = tf.getBackend();
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await tf.setBackend(hostEngine);
  });

  it.each([
    { label: 'defaults (BN, softmax, gelu)', overrides: {} },
    { label: 'separate pools per head, token chunks, dropout', overrides: { separateExpertsPerHead: true, tokenChunk: 4, dropout: 0.25, activation: 'relu' } },
  ] as { label: string; overrides: Partial<PeerLayerConfig> }[])('a training step equals the cpu engine\'s: $label', async ({ overrides }) => {
    const config = { ...TINY, ...overrides, seed: rng.int(1000) };
    const shape: [number, number, number] = [2, 5, TINY.dim];
    // An input whose top-k boundaries (and ReLU kinks) the two engines' rounding cannot flip
    // (float32 scores and pre-activations are accurate to ~1e-6 here); the weights depend on the seed only.
    await tf.setBackend('cpu');
    const twin = new PeerLayer(config);
    const separated = separatedInput(rng, shape, (x64) => [referencePeer(x64, 10, referenceParams(twin), referenceConfig(twin), true)], 2e-5, 2e-5);
    const x = Float32Array.from(separated.x.dataSync());
    separated.x.dispose();
    twin.dispose();
    const r = Float32Array.from(rng.normals(10 * TINY.dim));
    const gpu = await trainStep('webgpu', config, x, r, shape);
    const cpu = await trainStep('cpu', config, x, r, shape);
    await tf.setBackend('webgpu');
    expect(gpu.length).toBe(cpu.length);
    gpu.forEach((g, i) => expect(scaledError(g, cpu[i]!), `output ${i} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL));
  });

  it('leaks no tensor per training step and refuses synchronous usage statistics and routing with one clear error', async () => {
    const layer = new PeerLayer({ ...TINY, seed: rng.int(1000) });
    const x = tf.tensor3d(Float32Array.from(rng.normals(6 * TINY.dim)), [1, 6, TINY.dim]);
    await expectNoLeaks(async () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }).y) as tf.Scalar, layer.trainableVariables());
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
      // the row gradients recorded by backward are held until the sparse step consumes them
      layer.sparseStep(1);
    }, { label: 'webgpu PeerLayer step' });
    expect(() => layer.startUsage()).toThrow(/^PeerLayer.startUsage: reads the routing of every forward pass synchronously, which the webgpu engine cannot do; run it on wasm or cpu/);
    expect(() => layer.route(x, { training: false })).toThrow(/^PeerLayer.route: reads the routing synchronously, which the webgpu engine cannot do/);
    x.dispose();
    layer.dispose();
  });
});
