// Axes: E elements of a variable.
import * as tf from '@tensorflow/tfjs-core';
import { testRng, type TestRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { kernelPool } from '../wasm-memory/kernel-pool.js';
import { setPooledAdamwMinSize } from '../wasm/fused-adamw.js';
import { adamwUpdate, useComposedAdamw, type AdamwStepOptions } from './adamw.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', threads: 2, log: false });
  expect(kernelPool()?.threads).toBe(2);
});
afterAll(async () => {
  setPooledAdamwMinSize(undefined);
  useComposedAdamw(false);
  await initBackend({ backend: 'wasm', threads: 1, log: false });
});

/** Bit patterns, every NaN made the canonical one (WebAssembly leaves a NaN's payload open). */
const bits = (x: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(x, (u) => (Number.isNaN(u) ? NaN : u)).buffer));

interface State {
  p: Float32Array;
  g: Float32Array[];
  m: Float32Array;
  v: Float32Array;
}

/** Random parameters, moments (v >= 0) and a gradient per step, over many magnitudes, with zeros. */
function randomState(rng: TestRng, size: number, steps: number): State {
  const value = () => (rng.int(10) === 0 ? 0 : rng.normal() * 10 ** (rng.int(7) - 4));
  return {
    p: Float32Array.from({ length: size }, value),
    g: Array.from({ length: steps }, () => Float32Array.from({ length: size }, value)),
    m: Float32Array.from({ length: size }, value),
    v: Float32Array.from({ length: size }, () => Math.abs(value())),
  };
}

/** Runs `steps` AdamW steps from `s` on the current route; returns p, m, v. */
function run(s: State, shape: number[], o: Omit<AdamwStepOptions, 'step'>, firstStep: number): Float32Array[] {
  const p = tf.variable(tf.tensor(s.p, shape));
  const m = tf.variable(tf.tensor(s.m, shape));
  const v = tf.variable(tf.tensor(s.v, shape));
  const before = tf.memory().numTensors;
  s.g.forEach((gv, i) => {
    const g = tf.tensor(gv, shape);
    adamwUpdate(p, g, m, v, { ...o, step: firstStep + i });
    g.dispose();
  });
  expect(tf.memory().numTensors).toBe(before);
  const out = [p, m, v].map((t) => t.dataSync() as Float32Array);
  tf.dispose([p, m, v]);
  return out;
}

/** The update in float64, rounding nothing: the composition's result must be within float32 error of it. */
function float64Step(s: { p: number[]; m: number[]; v: number[] }, g: Float32Array, o: AdamwStepOptions): void {
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = Math.sqrt(1 - o.beta2 ** o.step);
  for (let i = 0; i < g.length; i++) {
    s.m[i] = o.beta1 * s.m[i]! + (1 - o.beta1) * g[i]!;
    s.v[i] = o.beta2 * s.v[i]! + (1 - o.beta2) * g[i]! * g[i]!;
    const q = s.p[i]! * (1 - o.lr * o.weightDecay);
    s.p[i] = q - (o.lr / bc1) * (s.m[i]! / (Math.sqrt(s.v[i]!) / bc2 + o.eps));
  }
}

const ROUTES = [
  ['the fused kernel on the pool', () => setPooledAdamwMinSize(0)],
  ['the fused kernel on the calling thread', () => setPooledAdamwMinSize(Infinity)],
] as const;

describe('adamwUpdate', () => {
  for (const [route, setRoute] of ROUTES) {
    it(`${route} gives the tfjs-op composition's bits, with and without decay, over several steps`, () => {
      const rng = testRng();
      for (const [shape, weightDecay, firstStep] of [
        [[3 + rng.int(200), 1 + rng.int(9)], 0.1, 1],
        [[4 * (1 + rng.int(50))], 0, 1 + rng.int(1000)],
        [[1], 0.01, 1],
      ] as const) {
        const size = shape.reduce((a, d) => a * d, 1);
        const s = randomState(rng, size, 3);
        const o = { lr: 10 ** -(1 + rng.int(3)), beta1: 0.9, beta2: rng.uniform(0.95, 0.999), eps: 1e-8, weightDecay };
        try {
          useComposedAdamw(true);
          const composed = run(s, [...shape], o, firstStep);
          useComposedAdamw(false);
          setRoute();
          const fused = run(s, [...shape], o, firstStep);
          for (let k = 0; k < 3; k++) expect(bits(fused[k]!), `${['p', 'm', 'v'][k]} [${shape}] (seed ${rng.seed})`).toEqual(bits(composed[k]!));
        } finally {
          useComposedAdamw(false);
          setPooledAdamwMinSize(undefined);
        }
      }
    });
  }

  it('follows the float64 update within float32 error', () => {
    const rng = testRng();
    const size = 500;
    // Moments from zero, as in training: each step then moves p by a few lr at most.
    const s = { ...randomState(rng, size, 4), m: new Float32Array(size), v: new Float32Array(size) };
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const [p] = run(s, [size], o, 1);
    const ref = { p: Array.from(s.p), m: Array.from(s.m), v: Array.from(s.v) };
    s.g.forEach((g, i) => float64Step(ref, g, { ...o, step: 1 + i }));
    for (let i = 0; i < size; i++) {
      // About ten float32 roundings per step, each within 6e-8 of |p| or of the step's move (a few lr).
      expect(Math.abs(p![i]! - ref.p[i]!), `element ${i} (seed ${rng.seed})`).toBeLessThanOrEqual(1e-6 * (Math.abs(ref.p[i]!) + o.lr * 4));
    }
  });

  it('refuses a gradient or moment of another shape, and a step below 1, naming them', () => {
    const p = tf.variable(tf.zeros([2, 3]), true, 'w');
    const m = tf.variable(tf.zeros([2, 3]));
    const v = tf.variable(tf.zeros([2, 3]));
    const g = tf.zeros([3, 2]);
    const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    expect(() => adamwUpdate(p, g, m, v, o)).toThrow("adamwUpdate: gradient has shape [3,2], expected the variable's [2,3] (w)");
    expect(() => adamwUpdate(p, tf.zeros([2, 3]), m, v, { ...o, step: 0 })).toThrow('step must be an integer >= 1, got 0');
    tf.dispose([p, m, v, g]);
  });
});
