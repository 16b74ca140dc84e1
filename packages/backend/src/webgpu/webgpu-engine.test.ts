// The webgpu engine on whatever Vulkan driver this process has: SwiftShader in CI (a fallback
// adapter, so it is forced), a real GPU elsewhere. Results are read with `await data()`: `dataSync`
// throws on webgpu in Node.
// Axes: M rows, K contracted axis, P columns, B batch, N table rows, D row width, U gathered rows.
import { testRng } from '@peer/test-utils';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { scaledError } from '../wasm/engine-compare.test-util.js';
import { PROBE_ENV } from './gpu-device-hint.js';
import { webgpuAdapterInfo } from './webgpu-engine.js';
import { webgpuSkipReason } from './webgpu-test-gate.js';

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu engine tests skipped: ${skip}`);
const rng = testRng();
const TOL = 1e-4;

type Out = Float32Array | Int32Array;

/** Runs `fn` on `engine` with fresh tensors from the same host arrays; nothing crosses engines. */
async function onEngine(engine: 'webgpu' | 'cpu', fn: () => tf.Tensor | tf.Tensor[]): Promise<Out[]> {
  if (!(await tf.setBackend(engine))) throw new Error(`cannot switch to ${engine}`);
  const outs = tf.tidy(() => {
    const r = fn();
    return Array.isArray(r) ? r : [r];
  });
  try {
    return (await Promise.all(outs.map((t) => t.data()))) as Out[];
  } finally {
    tf.dispose(outs);
  }
}

/** The same computation on webgpu and cpu; every output within TOL of cpu's, scaled by its magnitude. */
async function expectSameAsCpu(label: string, fn: () => tf.Tensor | tf.Tensor[]): Promise<Out[]> {
  const gpu = await onEngine('webgpu', fn);
  const cpu = await onEngine('cpu', fn);
  expect(gpu.length).toBe(cpu.length);
  gpu.forEach((g, i) => {
    expect(scaledError(g, cpu[i]!), `${label} output ${i} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL);
  });
  await tf.setBackend('webgpu');
  return gpu;
}

const normals = (n: number) => Float32Array.from(rng.normals(n));

/**
 * MLP inputs [x, y, w1, b1, w2] whose hidden pre-activations x w1 + b1 all lie farther from ReLU's
 * kink than 1e-4 of their sum of |terms|: a float32 pre-activation is within K u of that sum on
 * either engine, so both take the same side of the kink (else one gradient term differs wholly).
 */
function awayFromReluKinks(B: number, K: number, H: number, P: number): [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array] {
  for (let attempt = 0; attempt < 100; attempt++) {
    const [x, y, w1, b1, w2] = [normals(B * K), normals(B * P), normals(K * H), normals(H), normals(H * P)] as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    let ok = true;
    for (let b = 0; b < B && ok; b++) {
      for (let h = 0; h < H && ok; h++) {
        let pre = b1[h]!;
        let mass = Math.abs(b1[h]!);
        for (let k = 0; k < K; k++) {
          pre += x[b * K + k]! * w1[k * H + h]!;
          mass += Math.abs(x[b * K + k]! * w1[k * H + h]!);
        }
        ok = Math.abs(pre) > 1e-4 * mass;
      }
    }
    if (ok) return [x, y, w1, b1, w2];
  }
  throw new Error(`no MLP input away from the ReLU kinks found (seed ${rng.seed})`);
}

describe.skipIf(skip !== undefined)(`the webgpu engine${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });

  it("'auto' probes the adapter when told to, and skips a software one with the reason", async () => {
    const forced = process.env[PROBE_ENV];
    process.env[PROBE_ENV] = '1';
    try {
      const lines: string[] = [];
      const choice = await initBackend({ backend: 'auto', log: (l) => lines.push(l) });
      const info = webgpuAdapterInfo();
      if (info) {
        // A hardware GPU: auto takes it.
        expect(choice.backend).toBe('webgpu');
        expect(info.isFallbackAdapter).toBe(false);
      } else {
        expect(choice.backend).toBe('wasm');
        const webgpu = choice.skipped.find((s) => s.backend === 'webgpu');
        expect(webgpu?.reason).toMatch(/^only a software adapter, .+: too slow to train on \(set PEER_WEBGPU_ALLOW_FALLBACK=1/);
        expect(lines[0]).toContain('webgpu: only a software adapter');
        expect(tf.findBackendFactory('webgpu')).toBeNull();
      }
    } finally {
      if (forced === undefined) delete process.env[PROBE_ENV];
      else process.env[PROBE_ENV] = forced;
    }
  });

  it("an explicit 'webgpu' with allowFallbackAdapter starts on any adapter, reports it, and selects it again", async () => {
    const lines: string[] = [];
    const choice = await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: (l) => lines.push(l) });
    expect(choice).toMatchObject({ backend: 'webgpu', provider: '@tensorflow/tfjs-backend-webgpu', skipped: [], fixes: [] });
    expect(tf.getBackend()).toBe('webgpu');
    expect(lines).toEqual([expect.stringMatching(/^\[peer\] backend: webgpu via @tensorflow\/tfjs-backend-webgpu on .+$/)]);
    const info = webgpuAdapterInfo()!;
    expect(info.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(info.maxBufferSize).toBeGreaterThanOrEqual(info.maxStorageBufferBindingSize);
    expect(typeof info.isFallbackAdapter).toBe('boolean');
    await initBackend({ backend: 'cpu', log: false });
    expect(await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false })).toEqual(choice);
    expect(tf.getBackend()).toBe('webgpu');
  });

  it('matMul in all four transpose variants matches cpu', async () => {
    const [M, K, P] = [33, 47, 29];
    const a = normals(M * K);
    const b = normals(K * P);
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      await expectSameAsCpu(`matMul ta=${ta} tb=${tb}`, () =>
        tf.matMul(tf.tensor2d(a, ta ? [K, M] : [M, K]), tf.tensor2d(b, tb ? [P, K] : [K, P]), ta, tb),
      );
    }
  });

  it("a small MLP's gradients match cpu", async () => {
    const [B, K, H, P] = [16, 12, 20, 5];
    const [x, y, w1, b1, w2] = awayFromReluKinks(B, K, H, P);
    await expectSameAsCpu('mlp grads', () => {
      const loss = (w1t: tf.Tensor, b1t: tf.Tensor, w2t: tf.Tensor) => {
        const h = tf.relu(tf.add(tf.matMul(tf.tensor2d(x, [B, K]), w1t as tf.Tensor2D), b1t));
        return tf.mean(tf.square(tf.sub(tf.matMul(h, w2t as tf.Tensor2D), tf.tensor2d(y, [B, P])))) as tf.Scalar;
      };
      return tf.grads(loss)([tf.tensor2d(w1, [K, H]), tf.tensor1d(b1), tf.tensor2d(w2, [H, P])]);
    });
  });

  it('gather and its gradient (repeated rows summed) match cpu', async () => {
    const [N, D, U] = [50, 8, 30];
    const table = normals(N * D);
    const idx = Int32Array.from({ length: U }, () => rng.int(N));
    idx[1] = idx[0]!;
    const weights = normals(U * D);
    await expectSameAsCpu('gather + grad', () => {
      const rows = tf.tensor1d(idx, 'int32');
      const w = tf.tensor2d(weights, [U, D]);
      const f = (t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, rows), w));
      const t = tf.tensor2d(table, [N, D]);
      return [tf.gather(t, rows), tf.grad(f)(t)];
    });
  });

  it('unsortedSegmentSum matches cpu', async () => {
    const [U, D, N] = [40, 6, 10];
    const x = normals(U * D);
    const seg = Int32Array.from({ length: U }, () => rng.int(N));
    await expectSameAsCpu('unsortedSegmentSum', () => tf.unsortedSegmentSum(tf.tensor2d(x, [U, D]), tf.tensor1d(seg, 'int32'), N));
  });

  it('topk values and indices match cpu exactly', async () => {
    const [B, P, k] = [7, 64, 5];
    const x = normals(B * P);
    const gpu = await onEngine('webgpu', () => {
      const { values, indices } = tf.topk(tf.tensor2d(x, [B, P]), k);
      return [values, indices];
    });
    const cpu = await onEngine('cpu', () => {
      const { values, indices } = tf.topk(tf.tensor2d(x, [B, P]), k);
      return [values, indices];
    });
    expect(Array.from(gpu[0]!), `seed ${rng.seed}`).toEqual(Array.from(cpu[0]!));
    expect(Array.from(gpu[1]!), `seed ${rng.seed}`).toEqual(Array.from(cpu[1]!));
  });
});
