// The PKM layer on the webgpu engine (SwiftShader in CI) against the same layer on the cpu engine:
// same seed, same inputs; outputs, input and variable gradients, the value rows' gradient and the
// running statistics agree, with no synchronous read (dataSync throws on webgpu in Node). Tiny
// sizes: software Vulkan is slow.
// Axes: B batch, S sequence, T = B*S tokens, D model width, N memory slots, h heads, k slots per head.
// The value table is expert-store's DeviceExpertTable (pkm-tables.ts picks it on webgpu).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { DeviceRowGradient, type RowSparseGrad } from '@peer/expert-store';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PkmOptions } from './pkm-config.js';
import { ProductKeyMemory, pkmForward } from './pkm.js';
import { decisiveInputs, referenceOf } from './pkm-reference.test-util.js';


const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu PKM tests skipped: ${skip}`);
const rng = testRng();
const TOL = 1e-4;
const TINY: PkmOptions = { dim: 8, memories: 16, heads: 2, topK: 2, dimKey: 4 };

function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-30);
}

/** The value gradient as a dense [N, D] array, whichever kind the layer holds. */
async function denseValueGrad(layer: ProductKeyMemory): Promise<Float32Array> {
  const grad = layer.valueGrad;
  const dense = new Float32Array(grad.rows * grad.dim);
  if (grad instanceof DeviceRowGradient) {
    const summed = grad.summedRows();
    if (!summed) return dense;
    const [rows, values] = (await Promise.all([summed.slotRows.data(), summed.grads.data()])) as [Int32Array, Float32Array];
    // unused slots hold row -1 (and a zero gradient)
    rows.forEach((row, s) => {
      if (row >= 0) dense.set(values.subarray(s * grad.dim, (s + 1) * grad.dim), row * grad.dim);
    });
    return dense;
  }
  const host = grad as RowSparseGrad;
  const values = host.rowGrads();
  host.uniqueRows().forEach((row, s) => dense.set(values.subarray(s * grad.dim, (s + 1) * grad.dim), row * grad.dim));
  return dense;
}

/** y, dx, each trainable variable's gradient of sum(y * r), the running statistics, the value-row gradient. */
async function trainStep(engine: 'webgpu' | 'cpu', options: PkmOptions, x: Float32Array, r: Float32Array, shape: [number, number, number]): Promise<Float32Array[]> {
  await tf.setBackend(engine);
  const layer = new ProductKeyMemory(options);
  try {
    const outs = tf.tidy(() => {
      const xt = tf.tensor3d(x, shape);
      const rt = tf.tensor3d(r, shape);
      const vars = layer.trainableVariables();
      const loss = (input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input as tf.Tensor3D, { training: true }).y, rt)) as tf.Scalar;
      const { y } = layer.apply(xt, { training: true });
      const dx = tf.grad(loss)(xt);
      layer.zeroSparseGrads();
      const { grads } = tf.variableGrads(() => loss(xt), vars);
      const n = layer.queryNorm;
      return [y, dx, ...vars.map((v) => grads[v.name]!), ...(n ? [tf.clone(n.runningMean), tf.clone(n.runningVar)] : [])];
    });
    const values = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    tf.dispose(outs);
    return [...values, await denseValueGrad(layer)];
  } finally {
    layer.dispose();
  }
}

describe.skipIf(skip !== undefined)(`ProductKeyMemory on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hostEngine = '';
  beforeAll(async () => {
    hostEngine = tf.getBackend();
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await tf.setBackend(hostEngine);
  });

  it.each([
    { label: 'query BatchNorm, per-head keys', overrides: {} },
    { label: 'no norm, shared keys', overrides: { queryNorm: 'none', sharedKeys: true } },
  ] as { label: string; overrides: Partial<PkmOptions> }[])("a training step equals the cpu engine's: $label", async ({ overrides }) => {
    const options = { ...TINY, ...overrides, seed: rng.int(1000) };
    const shape: [number, number, number] = [2, 4, 8];
    // Inputs whose top-k the two engines' rounding cannot flip (the layer's weights depend on the seed only).
    await tf.setBackend('cpu');
    const twin = new ProductKeyMemory(options);
    const x = Float32Array.from(decisiveInputs(referenceOf(twin), rng, 8, true));
    twin.dispose();
    const r = Float32Array.from(rng.normals(8 * 8));
    const gpu = await trainStep('webgpu', options, x, r, shape);
    const cpu = await trainStep('cpu', options, x, r, shape);
    await tf.setBackend('webgpu');
    expect(gpu.length).toBe(cpu.length);
    gpu.forEach((g, i) => expect(scaledError(g, cpu[i]!), `output ${i} of ${gpu.length} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL));
  });

  it('pinned slots from the host give the cpu engine\'s output and keep the device slots a tensor', async () => {
    const options = { ...TINY, seed: rng.int(1000) };
    const T = 5;
    const x = Float32Array.from(rng.normals(T * 8));
    const pinned = Int32Array.from({ length: T * 2 * 2 }, () => rng.int(16));
    const run = async (engine: 'webgpu' | 'cpu') => {
      await tf.setBackend(engine);
      const layer = new ProductKeyMemory(options);
      const out = tf.tidy(() => {
        const r = pkmForward(tf.tensor2d(x, [T, 8]), layer.tensors(), layer.config, false, layer.valueGrad, { indices: pinned });
        expect(r.indices instanceof tf.Tensor).toBe(engine === 'webgpu');
        return r.y;
      });
      const y = (await out.data()) as Float32Array;
      out.dispose();
      layer.dispose();
      return y;
    };
    const gpu = await run('webgpu');
    const cpu = await run('cpu');
    await tf.setBackend('webgpu');
    expect(scaledError(gpu, cpu), `seed ${rng.seed}`).toBeLessThanOrEqual(TOL);
  });

  it('leaks no tensor per training step and refuses synchronous usage statistics with one clear error', async () => {
    const layer = new ProductKeyMemory({ ...TINY, seed: rng.int(1000) });
    const x = tf.tensor3d(Float32Array.from(rng.normals(6 * 8)), [1, 6, 8]);
    await expectNoLeaks(async () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }).y) as tf.Scalar, layer.trainableVariables());
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
      layer.zeroSparseGrads();
    }, { label: 'webgpu PKM step' });
    expect(() => layer.startUsage()).toThrow(/^pkm: startUsage reads the slots of every forward pass synchronously, which the webgpu engine cannot do; run it on wasm or cpu/);
    x.dispose();
    layer.dispose();
  });
});
