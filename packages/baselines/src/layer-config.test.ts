import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { LayerConfigError, parseLayerConfig, requireThat } from './layer-config.js';

const schema = z
  .strictObject({ a: z.int().positive(), b: z.number().default(2), nested: z.strictObject({ c: z.boolean() }).optional() })
  .superRefine((v, ctx) => requireThat(ctx, v.b < 10, 'b', 'must be below 10'));

describe('parseLayerConfig', () => {
  it('fills defaults', () => {
    expect(parseLayerConfig('t', schema, { a: 3 })).toEqual({ a: 3, b: 2 });
  });

  it('names the layer, every bad field and its value in one error', () => {
    let error: unknown;
    try {
      parseLayerConfig('pkm', schema, { a: -2, nested: { c: 'yes' } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LayerConfigError);
    expect((error as Error).message).toMatch(/^invalid pkm config: a = -2: .*; nested\.c = "yes": /);
    expect(() => parseLayerConfig('t', schema, { a: 1, b: 12 })).toThrow('invalid t config: b = 12: must be below 10');
    expect(() => parseLayerConfig('t', schema, { a: 1, zz: 1, yy: 2 })).toThrow("invalid t config: unknown fields 'zz', 'yy'");
    expect(() => parseLayerConfig('t', schema, 'big')).toThrow(/invalid t config: \(config\) = "big": /);
  });
});
