import * as tf from '@tensorflow/tfjs-core';
import { expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { AdamW } from './adamw.js';
import { clipByGlobalNorm } from './clip-grads.js';

// Plain float64 AdamW, written like torch.optim.AdamW.
function referenceAdamW(
  p: Float64Array,
  grads: Float64Array[],
  lrs: number[],
  o: { beta1: number; beta2: number; eps: number; weightDecay: number },
): Float64Array {
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  const x = Float64Array.from(p);
  grads.forEach((g, k) => {
    const t = k + 1;
    const lr = lrs[k]!;
    for (let i = 0; i < x.length; i++) {
      x[i] = x[i]! * (1 - lr * o.weightDecay);
      m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g[i]!;
      v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g[i]! * g[i]!;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - o.beta2 ** t) + o.eps;
      x[i] = x[i]! - (lr / (1 - o.beta1 ** t)) * (m[i]! / denom);
    }
  });
  return x;
}

describe('AdamW', () => {
  const options = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  let toDispose: tf.Tensor[] = [];
  afterEach(() => {
    tf.dispose(toDispose);
    toDispose = [];
  });

  it('matches a float64 reference over several steps, decaying matrices but not vectors', () => {
    const r = testRng();
    const w0 = r.normals(12, 1);
    const b0 = r.normals(4, 1);
    const w = tf.variable(tf.tensor(Float32Array.from(w0), [3, 4]));
    const b = tf.variable(tf.tensor(Float32Array.from(b0), [4]));
    toDispose.push(w, b);
    const opt = new AdamW([w, b], options);
    const gw: Float64Array[] = [];
    const gb: Float64Array[] = [];
    const lrs = [1e-2, 2e-2, 5e-3, 1e-2];
    for (const lr of lrs) {
      gw.push(Float64Array.from(r.normals(12, 0.5)));
      gb.push(Float64Array.from(r.normals(4, 0.5)));
      const g1 = tf.tensor(Float32Array.from(gw.at(-1)!), [3, 4]);
      const g2 = tf.tensor(Float32Array.from(gb.at(-1)!), [4]);
      opt.apply([g1, g2], lr);
      tf.dispose([g1, g2]);
    }
    expect(opt.step).toBe(4);
    // float32 inputs: compare against the reference run on the float32-rounded values
    const f32 = (a: ArrayLike<number>) => Float64Array.from(Float32Array.from(a));
    expectClose(w.dataSync(), referenceAdamW(f32(w0), gw.map(f32), lrs, options), { rtol: 1e-5, atol: 1e-6, label: 'matrix' });
    expectClose(b.dataSync(), referenceAdamW(f32(b0), gb.map(f32), lrs, { ...options, weightDecay: 0 }), {
      rtol: 1e-5,
      atol: 1e-6,
      label: 'vector (no decay)',
    });
    opt.dispose();
  });

  it('saves and restores its moments so that the next update is identical', () => {
    const r = testRng();
    const init = r.normals(6, 1);
    const a = tf.variable(tf.tensor(Float32Array.from(init), [2, 3]));
    const b = tf.variable(tf.tensor(Float32Array.from(init), [2, 3]));
    toDispose.push(a, b);
    const optA = new AdamW([a], options);
    const grads = [0, 1, 2].map(() => tf.tensor(Float32Array.from(r.normals(6, 1)), [2, 3]));
    toDispose.push(...grads);
    optA.apply([grads[0]!], 1e-2);
    optA.apply([grads[1]!], 1e-2);
    // b gets a's weights and optimizer state, then both take the same third step
    b.assign(a);
    const optB = new AdamW([b], options);
    const saved = new Map(optA.stateEntries().map((e) => [e.name, e]));
    expect([...saved.keys()]).toEqual(['optim/adamw/0/m', 'optim/adamw/0/v']);
    optB.loadStateEntries(optA.step, (n) => saved.get(n));
    optA.apply([grads[2]!], 1e-2);
    optB.apply([grads[2]!], 1e-2);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(() => optB.loadStateEntries(1, () => undefined)).toThrow(/optim\/adamw\/0\/m' is missing/);
    expect(() =>
      optB.loadStateEntries(1, (n) => ({ ...saved.get(n)!, shape: [3, 2], name: n })),
    ).toThrow(/shape \[3,2\], expected \[2,3\]/);
    optA.dispose();
    optB.dispose();
  });

  it('leaks no tensors per step', async () => {
    const p = tf.variable(tf.ones([4, 4]));
    toDispose.push(p);
    const opt = new AdamW([p], options);
    const g = tf.ones([4, 4]);
    toDispose.push(g);
    await expectNoLeaks(() => opt.apply([g], 1e-3));
    opt.dispose();
  });
});

describe('clipByGlobalNorm', () => {
  it('scales all gradients by maxNorm / global norm when above the limit', () => {
    const r = testRng();
    const a = r.normals(5, 2);
    const b = r.normals(7, 2);
    const norm = Math.sqrt([...a, ...b].reduce((s, x) => s + x * x, 0));
    const ta = tf.tensor(Float32Array.from(a));
    const tb = tf.tensor(Float32Array.from(b));
    const { grads, norm: got } = clipByGlobalNorm([ta, tb], 1);
    expectClose([got], [norm], { rtol: 1e-5 });
    expectClose(grads[0]!.dataSync(), a.map((x) => x / (norm + 1e-6)), { rtol: 1e-5 });
    expectClose(grads[1]!.dataSync(), b.map((x) => x / (norm + 1e-6)), { rtol: 1e-5 });
    const { grads: same } = clipByGlobalNorm([ta, tb], 1e9);
    expectClose(same[0]!.dataSync(), a, { rtol: 1e-6 });
    tf.dispose([ta, tb, ...grads, ...same]);
  });
});
