import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatValue } from './format-value.js';
import { initBackend } from './init-backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu', log: false });
});

describe('formatValue', () => {
  it('writes plain values as JSON, non-finite numbers and undefined by name', () => {
    expect(formatValue('16')).toBe('"16"');
    expect(formatValue(1.5)).toBe('1.5');
    expect(formatValue(NaN)).toBe('NaN');
    expect(formatValue(-Infinity)).toBe('-Infinity');
    expect(formatValue(true)).toBe('true');
    expect(formatValue(null)).toBe('null');
    expect(formatValue(undefined)).toBe('undefined');
    expect(formatValue(undefined, { undefinedText: 'missing' })).toBe('missing');
    expect(formatValue([[1]])).toBe('[[1]]');
    expect(formatValue({ k: 2 })).toBe('{"k":2}');
  });

  it('describes tensors by dtype and shape, and survives what JSON cannot write', () => {
    const t = tf.zeros([2, 3], 'int32');
    expect(formatValue(t)).toBe('a int32 tensor of shape [2, 3]');
    t.dispose();
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(formatValue(cycle)).toBe('[object Object]');
    expect(formatValue(10n)).toBe('10');
  });

  it('cuts long text to maxLength', () => {
    const long = 'x'.repeat(100);
    expect(formatValue(long, { maxLength: 80 })).toBe(`"${'x'.repeat(76)}...`);
    expect(formatValue(long, { maxLength: 80 })).toHaveLength(80);
    expect(formatValue(long)).toHaveLength(102);
  });
});
