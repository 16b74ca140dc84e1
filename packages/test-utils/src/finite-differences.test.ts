import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkGradients } from './finite-differences.js';
import { testRng } from './rng.js';

describe('checkGradients', () => {
  it('accepts a correct gradient and returns the coordinates it checked', () => {
    const rng = testRng();
    const x = tf.tensor(Float32Array.from(rng.normals(12)), [3, 4]);
    const w = tf.tensor(Float32Array.from(rng.normals(12)), [3, 4]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.tanh(a), b)) as tf.Scalar;
    const result = checkGradients(f, [x, w], { label: `seed ${rng.seed}` });
    expect(result.inputs).toHaveLength(2);
    expect(result.inputs[0]!.indices).toEqual(Array.from({ length: 12 }, (_, i) => i));
    // The analytic gradient of sum(tanh(a) * b) w.r.t. b is tanh(a), checked against plain math.
    const xs = x.dataSync();
    result.inputs[1]!.analytic.forEach((g, j) => expect(g).toBeCloseTo(Math.tanh(xs[j]!), 5));
    tf.dispose([x, w]);
  });

  it('catches a deliberately wrong custom gradient, naming the input and coordinate', () => {
    const rng = testRng();
    const x = tf.tensor1d(Float32Array.from(rng.uniforms(8, 0.5, 2)));
    // d/dx sum(x^2) is 2x; this claims 3x.
    const wrong = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const v = args[0] as tf.Tensor;
      return { value: tf.sum(tf.square(v)), gradFunc: (dy: tf.Tensor) => [tf.mul(dy, tf.mul(v, 3))] };
    });
    expect(() => checkGradients((v) => wrong(v) as tf.Scalar, [x], { label: 'wrong' })).toThrow(
      /^wrong gradient mismatch for input 0 at \[0\]: analytic .*, finite differences /,
    );
    const right = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const v = args[0] as tf.Tensor;
      return { value: tf.sum(tf.square(v)), gradFunc: (dy: tf.Tensor) => [tf.mul(dy, tf.mul(v, 2))] };
    });
    expect(() => checkGradients((v) => right(v) as tf.Scalar, [x])).not.toThrow();
    x.dispose();
  });

  it('checks at most maxCoords coordinates, spread over the input, and leaks nothing', () => {
    const x = tf.randomNormal([1000]);
    const before = tf.memory().numTensors;
    const r = checkGradients((v) => tf.sum(tf.sin(v)) as tf.Scalar, [x], { maxCoords: 10 });
    expect(r.inputs[0]!.indices).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('extrapolates away the eps^2 truncation error that a large step leaves in the central difference', () => {
    // d/dx sum(sin(5x)) = 5 cos(5x); with eps = 0.1 the central difference is off by about
    // eps^2 * 25 / 6 = 4 % of it, the Richardson estimate by well under 0.5 %.
    const rng = testRng();
    const x = tf.tensor1d(Float32Array.from(rng.uniforms(6, -0.2, 0.2)));
    const f = (v: tf.Tensor) => tf.sum(tf.sin(tf.mul(v, 5))) as tf.Scalar;
    const r = checkGradients(f, [x], { eps: 0.1, rtol: 5e-3, atol: 1e-5, label: `seed ${rng.seed}` });
    const xs = x.dataSync();
    r.inputs[0]!.numeric.forEach((g, j) => expect(Math.abs(g - 5 * Math.cos(5 * xs[j]!))).toBeLessThan(5e-3 * 5));
    expect(() => checkGradients(f, [x], { eps: 0.1, rtol: 5e-3, atol: 1e-5, richardson: false })).toThrow(/gradient mismatch for input 0/);
    x.dispose();
  });
});
