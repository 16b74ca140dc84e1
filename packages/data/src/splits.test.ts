import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignSplit, checkFractions, DEFAULT_FRACTIONS, documentUniform, SPLIT_NAMES, type SplitName } from './splits.js';

describe('checkFractions', () => {
  it('accepts fractions summing to 1 and fills missing splits with 0', () => {
    expect(checkFractions()).toEqual(DEFAULT_FRACTIONS);
    expect(checkFractions({ train: 0.8, validation: 0.2 })).toEqual({ train: 0.8, validation: 0.2, test: 0 });
  });

  it('names the bad fraction and value', () => {
    expect(() => checkFractions({ train: 0.9, validation: 0.2, test: 0 })).toThrow(/must sum to 1, got .* \(sum 1\.1/);
    expect(() => checkFractions({ train: 1.5, validation: -0.5 })).toThrow('split fraction train must be a number in [0, 1], got 1.5');
    expect(() => checkFractions({ train: Number.NaN })).toThrow(/split fraction train must be a number in \[0, 1\], got null/);
    expect(() => checkFractions({ train: 1, dev: 0 } as never)).toThrow('split fractions: unknown split "dev" (expected train, validation, test)');
  });
});

describe('assignSplit', () => {
  it('the uniform is the first 53 bits of SHA-256(seed, text), as a fraction', () => {
    // Plain reference: the hex digest's first 53 bits via BigInt.
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 50 }), fc.integer({ min: -1e9, max: 1e9 }), (text, seed) => {
        const hex = createHash('sha256').update(`peer-data split v1\0${seed}\0${text}`, 'utf8').digest('hex');
        const reference = Number(BigInt(`0x${hex.slice(0, 16)}`) >> 11n) / 2 ** 53;
        expect(documentUniform(text, seed)).toBe(reference);
      }),
      { numRuns: 200 },
    );
  });

  it('is deterministic, depends on the seed, and follows the fractions', () => {
    const texts = Array.from({ length: 20000 }, (_, i) => `document number ${i}`);
    const fractions = { train: 0.7, validation: 0.2, test: 0.1 };
    const count = (seed: number): Record<SplitName, number> => {
      const counts = { train: 0, validation: 0, test: 0 };
      for (const t of texts) counts[assignSplit(t, seed, fractions)]++;
      return counts;
    };
    const a = count(1);
    expect(count(1)).toEqual(a);
    for (const name of SPLIT_NAMES) {
      // Binomial: within 5 standard deviations of n * p.
      const p = fractions[name];
      expect(Math.abs(a[name] - texts.length * p)).toBeLessThan(5 * Math.sqrt(texts.length * p * (1 - p)));
    }
    const moved = texts.filter((t) => assignSplit(t, 1, fractions) !== assignSplit(t, 2, fractions)).length;
    expect(moved).toBeGreaterThan(texts.length * 0.3);
  });

  it('never assigns to a split with fraction 0', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        expect(assignSplit(text, 0, { train: 1, validation: 0, test: 0 })).toBe('train');
        expect(assignSplit(text, 0, { train: 0, validation: 1, test: 0 })).toBe('validation');
        expect(assignSplit(text, 0, { train: 0.5, validation: 0, test: 0.5 })).not.toBe('validation');
      }),
      { numRuns: 200 },
    );
  });
});
