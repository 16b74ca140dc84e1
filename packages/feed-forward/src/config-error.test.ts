import { describe, expect, it } from 'vitest';
import { ConfigError, valueAtPath } from './config-error.js';

class LayerError extends ConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'LayerError';
  }
}

describe('ConfigError', () => {
  it('recognises its subclasses, and only config errors', () => {
    const err = new LayerError('invalid x config: a = 1: too small');
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(LayerError);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe('invalid x config: a = 1: too small');
    expect(new Error('x')).not.toBeInstanceOf(ConfigError);
    expect(new ConfigError('x')).not.toBeInstanceOf(LayerError);
    expect((null as unknown as object) instanceof ConfigError).toBe(false);
  });

  it('recognises a config error of another build of this package (ESM beside CJS)', () => {
    const other = Object.assign(new Error('invalid y config'), { [Symbol.for('@peer/feed-forward/config-error')]: true });
    expect(other instanceof ConfigError).toBe(true);
  });
});

describe('valueAtPath', () => {
  it('reads nested fields and array items, and gives undefined past a missing or non-object step', () => {
    const input = { a: { b: [10, { c: 'x' }] }, n: null };
    expect(valueAtPath(input, ['a', 'b', 1, 'c'])).toBe('x');
    expect(valueAtPath(input, ['a', 'b', 0])).toBe(10);
    expect(valueAtPath(input, [])).toBe(input);
    expect(valueAtPath(input, ['a', 'z', 'q'])).toBeUndefined();
    expect(valueAtPath(input, ['n', 'q'])).toBeUndefined();
    expect(valueAtPath(3, ['q'])).toBeUndefined();
  });
});
