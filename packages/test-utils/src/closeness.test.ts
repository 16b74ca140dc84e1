import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { closeness, expectClose } from './closeness.js';
import { testRng } from './rng.js';

describe('expectClose', () => {
  it('passes within tolerance and throws on a real mismatch, naming the index, values and label', () => {
    const rng = testRng();
    const expected = rng.normals(100);
    const within = expected.map((v) => v * (1 + 0.5e-4));
    expect(() => expectClose(within, expected, { rtol: 1e-4 })).not.toThrow();
    const off = Float64Array.from(expected);
    off[37] = expected[37]! * (1 + 3e-4) + 1e-3;
    expect(() => expectClose(off, expected, { rtol: 1e-4, label: 'case A' })).toThrow(
      new RegExp(`^case A not close at \\[37\\]: actual ${off[37]}, expected ${expected[37]}`),
    );
  });

  it('atol accepts small absolute differences near zero; floor bounds the relative error', () => {
    expect(() => expectClose([1e-7], [0], { rtol: 1e-4, atol: 1e-6 })).not.toThrow();
    expect(() => expectClose([1e-7], [0], { rtol: 1e-4 })).toThrow(/not close at \[0\]/);
    expect(() => expectClose([1e-7], [0], { rtol: 1e-4, floor: 1e-2 })).not.toThrow();
  });

  it('NaN never passes', () => {
    expect(() => expectClose([NaN], [1], { atol: 1 })).toThrow(/not close at \[0\]/);
  });

  it('compares tensor shapes and lengths', () => {
    const [a, b, c] = [tf.zeros([2, 3]), tf.zeros([3, 2]), tf.zeros([2, 3])];
    expect(() => expectClose(a, b, { label: 'T' })).toThrow('T shape mismatch: actual [2,3], expected [3,2]');
    expect(() => expectClose([1, 2], [1, 2, 3])).toThrow('length mismatch: actual 2, expected 3');
    expect(() => expectClose(a, c)).not.toThrow();
    tf.dispose([a, b, c]);
  });
});

describe('closeness', () => {
  it('reports the max absolute and relative error and where the worst one is', () => {
    const c = closeness([1, 2.2, -3], [1, 2, -2]);
    expect(c.maxAbsError).toBeCloseTo(1, 12);
    expect(c.maxRelError).toBeCloseTo(0.5, 12);
    expect(c.worstIndex).toBe(2);
    expect(closeness([1, NaN], [1, 2]).worstIndex).toBe(1);
  });
});
