// Axes: T tokens, D model width, H hidden width.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkGradients, expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import type { NamedArray } from '@peer/expert-store';
import { DenseFfw, denseFfwForward, type DenseFfwParams } from './dense-ffw.js';
import { DENSE_FFW_ACTIVATIONS, type DenseFfwActivation } from './dense-ffw-config.js';

// ---- float64 reference, written plainly ----

/** erf by its Taylor series (converges fast for |x| < 4; beyond, 1 - |erf| < 2e-8). */
function erf64(x: number): number {
  if (Math.abs(x) >= 4) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function act64(x: number, activation: DenseFfwActivation): number {
  switch (activation) {
    case 'gelu':
      return 0.5 * x * (1 + erf64(x / Math.SQRT2));
    case 'gelu-tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    case 'relu':
      return Math.max(x, 0);
  }
}

interface Params64 {
  w1: Float64Array;
  b1?: Float64Array;
  w2: Float64Array;
  b2?: Float64Array;
  w3?: Float64Array;
  b3?: Float64Array;
}

/** y[t] = W2^T (act(W1^T x + b1) [* (W3^T x + b3)]) + b2 with W stored [in, out]. */
function reference(x: Float64Array, T: number, D: number, H: number, p: Params64, activation: DenseFfwActivation, glu: boolean): Float64Array {
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    const h = new Float64Array(H);
    for (let f = 0; f < H; f++) {
      let a = p.b1 ? p.b1[f]! : 0;
      for (let d = 0; d < D; d++) a += x[t * D + d]! * p.w1[d * H + f]!;
      h[f] = act64(a, activation);
      if (glu) {
        let g = p.b3 ? p.b3[f]! : 0;
        for (let d = 0; d < D; d++) g += x[t * D + d]! * p.w3![d * H + f]!;
        h[f] = h[f]! * g;
      }
    }
    for (let d = 0; d < D; d++) {
      let s = p.b2 ? p.b2[d]! : 0;
      for (let f = 0; f < H; f++) s += h[f]! * p.w2[f * D + d]!;
      y[t * D + d] = s;
    }
  }
  return y;
}

function f64(t: tf.Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}

function params64(p: DenseFfwParams): Params64 {
  return {
    w1: f64(p.w1),
    w2: f64(p.w2),
    ...(p.b1 ? { b1: f64(p.b1) } : {}),
    ...(p.b2 ? { b2: f64(p.b2) } : {}),
    ...(p.w3 ? { w3: f64(p.w3) } : {}),
    ...(p.b3 ? { b3: f64(p.b3) } : {}),
  };
}

/** Gives the layer random biases so that the bias terms are exercised (they start at zero). */
function randomizeBiases(layer: DenseFfw, rng: TestRng): void {
  const p = layer.params();
  for (const b of [p.b1, p.b2, p.b3]) {
    if (b) tf.tidy(() => (b as unknown as tf.Variable).assign(tf.tensor1d(Float32Array.from(rng.normals(b.size, 0.5)))));
  }
}

const VARIANTS = DENSE_FFW_ACTIVATIONS.flatMap((activation) =>
  [false, true].flatMap((glu) => [true, false].map((bias) => ({ activation, glu, bias }))),
);

describe('DenseFfw forward', () => {
  it.each(VARIANTS)('matches the float64 reference ($activation, glu $glu, bias $bias)', ({ activation, glu, bias }) => {
    const rng = testRng();
    const [B, S, D, H] = [2, 3, 8, 12];
    const layer = new DenseFfw({ dim: D, hidden: H, activation, glu, bias, seed: rng.int(1000) });
    randomizeBiases(layer, rng);
    const x = rng.normals(B * S * D);
    const y = tf.tidy(() => layer.apply(tf.tensor3d(Float32Array.from(x), [B, S, D]), { training: true }).y);
    expect(y.shape).toEqual([B, S, D]);
    const expected = reference(x, B * S, D, H, params64(layer.params()), activation, glu);
    expectClose(y.dataSync(), expected, { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
    y.dispose();
    layer.dispose();
  });

  it('defaults: hidden 4 * dim, exact GELU, bias, no GLU; Glorot-uniform weights from the seed', () => {
    const layer = new DenseFfw({ dim: 16 });
    expect(layer.config).toEqual({ dim: 16, hidden: 64, activation: 'gelu', glu: false, bias: true, seed: 0 });
    const w1 = Array.from(layer.params().w1.dataSync());
    const limit = Math.sqrt(6 / (16 + 64));
    expect(Math.max(...w1.map(Math.abs))).toBeLessThanOrEqual(Math.fround(limit));
    // Uniform on [-l, l] has variance l^2 / 3; 1024 samples estimate it within a few percent.
    const variance = w1.reduce((s, v) => s + v * v, 0) / w1.length;
    expect(variance / (limit ** 2 / 3)).toBeGreaterThan(0.85);
    expect(variance / (limit ** 2 / 3)).toBeLessThan(1.15);
    const same = new DenseFfw({ dim: 16 });
    const other = new DenseFfw({ dim: 16, seed: 1 });
    expect(Array.from(same.params().w2.dataSync())).toEqual(Array.from(layer.params().w2.dataSync()));
    expect(Array.from(other.params().w2.dataSync())).not.toEqual(Array.from(layer.params().w2.dataSync()));
    expect(Array.from(layer.params().b1!.dataSync()).every((v) => v === 0)).toBe(true);
    for (const l of [layer, same, other]) l.dispose();
  });

  it('rejects an input of the wrong width with the shape in the message', () => {
    const layer = new DenseFfw({ dim: 4, hidden: 8 });
    const x = tf.zeros([2, 3, 5]) as tf.Tensor3D;
    expect(() => layer.apply(x, { training: false })).toThrow('x must be [batch, seq, 4], got [2, 3, 5]');
    x.dispose();
    layer.dispose();
    expect(() => layer.trainableVariables()).toThrow('used after dispose');
  });
});

describe('DenseFfw gradients', () => {
  it.each(VARIANTS)('match float64 finite differences of the reference ($activation, glu $glu, bias $bias)', ({ activation, glu, bias }) => {
    const rng = testRng();
    const [T, D, H] = [5, 6, 10];
    const layer = new DenseFfw({ dim: D, hidden: H, activation, glu, bias, seed: rng.int(1000) });
    randomizeBiases(layer, rng);
    const x = rng.normals(T * D);
    const r = rng.normals(T * D); // loss = sum(y * r)
    const p = params64(layer.params());
    const names = (Object.keys(p) as (keyof Params64)[]).filter((k) => p[k]);

    // Analytic: tf gradients of sum(y * r) w.r.t. x and every parameter.
    const ps = layer.params();
    const inputs = [tf.tensor2d(Float32Array.from(x), [T, D]), ...names.map((n) => ps[n]!)];
    const r2 = tf.tensor2d(Float32Array.from(r), [T, D]);
    const gradTensors = tf.grads((...xs: tf.Tensor[]) => {
      const params = Object.fromEntries(names.map((n, i) => [n, xs[i + 1]])) as unknown as DenseFfwParams;
      return tf.sum(tf.mul(denseFfwForward(xs[0] as tf.Tensor2D, params, { activation, glu }), r2));
    })(inputs);
    const grads = gradTensors.map((g) => Float64Array.from(g.dataSync()));
    tf.dispose([...gradTensors, r2]);
    inputs[0]!.dispose();

    // Numeric: central differences in float64, a step far below any kink's distance for ReLU in practice.
    const loss = (xx: Float64Array, pp: Params64) => reference(xx, T, D, H, pp, activation, glu).reduce((s, v, i) => s + v * r[i]!, 0);
    const eps = 1e-6;
    const all: Float64Array[] = [x, ...names.map((n) => p[n]!)];
    all.forEach((arr, which) => {
      const numeric = new Float64Array(arr.length);
      for (let i = 0; i < arr.length; i++) {
        const orig = arr[i]!;
        arr[i] = orig + eps;
        const up = loss(x, p);
        arr[i] = orig - eps;
        const down = loss(x, p);
        arr[i] = orig;
        numeric[i] = (up - down) / (2 * eps);
      }
      expectClose(grads[which]!, numeric, { rtol: 2e-3, atol: 2e-4, label: `${which === 0 ? 'x' : names[which - 1]} (seed ${rng.seed})` });
    });
    layer.dispose();
  });

  it.each(['gelu', 'gelu-tanh'] as const)('pass the float32 finite-difference check (%s, GLU)', (activation) => {
    const rng = testRng();
    const [T, D, H] = [4, 5, 7];
    const layer = new DenseFfw({ dim: D, hidden: H, activation, glu: true, seed: rng.int(1000) });
    randomizeBiases(layer, rng);
    const p = layer.params();
    const r = tf.tensor2d(Float32Array.from(rng.normals(T * D)), [T, D]);
    const x = tf.tensor2d(Float32Array.from(rng.normals(T * D)), [T, D]);
    checkGradients(
      (xx, w1, b1, w2, b2, w3, b3) =>
        tf.sum(tf.mul(denseFfwForward(xx as tf.Tensor2D, { w1, b1, w2, b2, w3, b3 } as DenseFfwParams, { activation, glu: true }), r)),
      [x, p.w1, p.b1!, p.w2, p.b2!, p.w3!, p.b3!],
      { label: `seed ${rng.seed}` },
    );
    tf.dispose([r, x]);
    layer.dispose();
  });
});

describe('DenseFfw bookkeeping', () => {
  it('counts FLOPs and parameters as computed by hand', () => {
    // D = 8, H = 32: two matMuls of 8 x 32 multiply-adds = 2 * 2 * 256 FLOPs; GLU adds a third.
    const plain = new DenseFfw({ dim: 8, hidden: 32 });
    expect(plain.flopsPerToken()).toBe(1024);
    expect(plain.totalParams()).toBe(8 * 32 + 32 + 32 * 8 + 8);
    expect(plain.activeParamsPerToken()).toBe(552);
    expect(plain.trainableVariables().reduce((s, v) => s + v.size, 0)).toBe(552);
    const glu = new DenseFfw({ dim: 8, hidden: 32, glu: true });
    expect(glu.flopsPerToken()).toBe(1536);
    expect(glu.totalParams()).toBe(3 * 256 + 32 + 8 + 32);
    expect(glu.trainableVariables().reduce((s, v) => s + v.size, 0)).toBe(840);
    const noBias = new DenseFfw({ dim: 8, hidden: 32, bias: false });
    expect(noBias.totalParams()).toBe(512);
    expect(noBias.trainableVariables()).toHaveLength(2);
    for (const l of [plain, glu, noBias]) l.dispose();
  });

  it('has no sparse state: sparseStep and zeroSparseGrads change nothing', () => {
    const layer = new DenseFfw({ dim: 4, hidden: 8 });
    const before = layer.stateEntries('');
    layer.sparseStep(1);
    layer.zeroSparseGrads();
    expect(layer.stateEntries('')).toEqual(before);
    expect('startUsage' in layer).toBe(false);
    layer.dispose();
  });

  it('leaks no tensors across forward + backward + update steps', async () => {
    const layer = new DenseFfw({ dim: 8, hidden: 16, glu: true });
    const x = tf.randomNormal([2, 3, 8]) as tf.Tensor3D;
    await expectNoLeaks(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }).y), layer.trainableVariables());
      tf.tidy(() => {
        for (const v of layer.trainableVariables()) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.01)));
      });
      tf.dispose([value, ...Object.values(grads)]);
      layer.sparseStep(1);
    });
    x.dispose();
    layer.dispose();
  });

  it('releases every variable on dispose', () => {
    const before = tf.memory().numTensors;
    const layer = new DenseFfw({ dim: 8, hidden: 16, glu: true });
    expect(tf.memory().numTensors).toBe(before + 6);
    layer.dispose();
    layer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('round-trips its state through named entries', () => {
    const rng = testRng();
    const a = new DenseFfw({ dim: 6, hidden: 9, glu: true, seed: 1 });
    randomizeBiases(a, rng);
    const entries = a.stateEntries('blocks.2.ffw.');
    expect(entries.map((e) => e.name)).toEqual(['w1', 'b1', 'w2', 'b2', 'w3', 'b3'].map((n) => `blocks.2.ffw.${n}`));
    expect(entries[0]).toMatchObject({ dtype: 'F32', shape: [6, 9] });
    const b = new DenseFfw({ dim: 6, hidden: 9, glu: true, seed: 2 });
    const byName = new Map(entries.map((e) => [e.name, e]));
    b.loadStateEntries('blocks.2.ffw.', (n) => byName.get(n));
    const x = tf.tensor3d(Float32Array.from(rng.normals(12)), [1, 2, 6]);
    const ya = tf.tidy(() => a.apply(x, { training: false }).y);
    const yb = tf.tidy(() => b.apply(x, { training: false }).y);
    expect(Array.from(yb.dataSync())).toEqual(Array.from(ya.dataSync()));
    tf.dispose([x, ya, yb]);
    a.dispose();
    b.dispose();
  });

  it('refuses a missing or mis-shaped entry, naming it, and assigns nothing', () => {
    const layer = new DenseFfw({ dim: 4, hidden: 8 });
    const entries = new Map(layer.stateEntries('f.').map((e) => [e.name, e]));
    const w1Before = Array.from(layer.params().w1.dataSync());
    const missing = new Map(entries);
    missing.delete('f.b2');
    missing.set('f.w1', { ...entries.get('f.w1')!, data: new Float32Array(32).fill(7) });
    expect(() => layer.loadStateEntries('f.', (n) => missing.get(n))).toThrow("entry 'f.b2' is missing");
    expect(Array.from(layer.params().w1.dataSync())).toEqual(w1Before);
    const wrong = new Map(entries);
    wrong.set('f.w2', { name: 'f.w2', dtype: 'F32', shape: [4, 8], data: new Float32Array(32) } satisfies NamedArray);
    expect(() => layer.loadStateEntries('f.', (n) => wrong.get(n))).toThrow("entry 'f.w2' has shape [4, 8], expected [8, 4]");
    layer.dispose();
  });
});

describe('DenseFfw config', () => {
  it.each([
    [{ dim: 4, hidden: -3 }, 'invalid dense FFW config: hidden = -3: Too small'],
    [{ dim: 2.5 }, 'dim = 2.5'],
    [{ dim: 4, activation: 'swish' }, 'activation = "swish"'],
    [{ dim: 4, width: 8 }, "unknown field 'width'"],
    [{}, 'dim = undefined'],
  ])('rejects %j', (config, message) => {
    expect(() => new DenseFfw(config as never)).toThrow(message);
  });
});
