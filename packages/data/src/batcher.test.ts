import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Batcher, seed32, type Batch, type BatcherOptions } from './batcher.js';
import { DataError } from './errors.js';
import { arrayTokenSource } from './token-source.js';

// Tokens 0, 1, 2, ...: every value is its own position, so a batch shows exactly which windows it took.
const iota = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i);

function take(batcher: Batcher, n: number): Batch[] {
  return Array.from({ length: n }, () => batcher.next());
}

describe('Batcher', () => {
  it('windows are seqLen + 1 consecutive tokens; targets are the inputs shifted by one', () => {
    const N = 1000;
    const batcher = new Batcher(iota(N), { batchSize: 4, seqLen: 16, seed: 3 });
    for (const batch of take(batcher, 30)) {
      expect(batch.inputs.length).toBe(4 * 16);
      for (let b = 0; b < 4; b++) {
        const row = batch.inputs.subarray(b * 16, (b + 1) * 16);
        const targets = batch.targets.subarray(b * 16, (b + 1) * 16);
        for (let t = 0; t < 16; t++) {
          expect(row[t]).toBe(row[0]! + t);
          expect(targets[t]).toBe(row[t]! + 1);
        }
        expect(targets[15]).toBeLessThan(N);
      }
    }
  });

  it('an epoch visits distinct windows on one grid; the grid offset and order change between epochs', () => {
    const N = 1000; // 999 predictable tokens: 62 windows of 16, slack 7
    const batcher = new Batcher(iota(N), { batchSize: 5, seqLen: 16, seed: 11 });
    expect(batcher.windowsPerEpoch).toBe(62);
    expect(batcher.batchesPerEpoch).toBe(12);
    const epochs: number[][] = [];
    for (let e = 0; e < 6; e++) {
      const starts = take(batcher, 12).flatMap((batch) => {
        expect(batch.epoch).toBe(e);
        return Array.from({ length: 5 }, (_, b) => batch.inputs[b * 16]!);
      });
      expect(new Set(starts).size).toBe(60);
      const offset = starts[0]! % 16;
      for (const s of starts) expect(s % 16).toBe(offset);
      expect(offset).toBeLessThanOrEqual(7);
      epochs.push(starts);
    }
    expect(new Set(epochs.map((s) => s[0]! % 16)).size).toBeGreaterThan(1);
    expect(new Set(epochs.map((s) => s.join())).size).toBe(6);
  });

  it('the order is a uniform shuffle (first window over many seeds)', () => {
    const W = 8;
    const counts = new Array<number>(W).fill(0);
    const runs = 4000;
    for (let seed = 0; seed < runs; seed++) {
      const batch = new Batcher(iota(W * 4 + 1), { batchSize: 1, seqLen: 4, seed }).next();
      counts[batch.inputs[0]! / 4]!++;
    }
    // Chi-square with 7 degrees of freedom: P(X > 24.3) = 0.001.
    const chi2 = counts.reduce((a, c) => a + (c - runs / W) ** 2 / (runs / W), 0);
    expect(chi2).toBeLessThan(24.3);
  });

  it('is deterministic: same seed, same batches; another seed, other batches', () => {
    const tokens = iota(5000);
    const options: BatcherOptions = { batchSize: 3, seqLen: 32, seed: 42 };
    const a = take(new Batcher(tokens, options), 200);
    const b = take(new Batcher(tokens, options), 200);
    expect(b).toEqual(a);
    const c = take(new Batcher(tokens, { ...options, seed: 43 }), 200);
    expect(c.map((x) => x.inputs[0])).not.toEqual(a.map((x) => x.inputs[0]));
  });

  it('without shuffling, windows come in stream order from offset 0', () => {
    const batcher = new Batcher(iota(100), { batchSize: 2, seqLen: 10, shuffle: false });
    expect(take(batcher, 5).map((b) => [b.inputs[0], b.inputs[10]])).toEqual([
      [0, 10],
      [20, 30],
      [40, 50],
      [60, 70],
      [0, 10],
    ]);
  });

  it('resumes exactly from a saved state (JSON round trip), across epoch boundaries', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20, max: 400 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer(),
        (N, batchSize, seqLen, before, after, seed) => {
          if (Math.floor((N - 1) / seqLen) < batchSize) return;
          const options = { batchSize, seqLen, seed };
          const tokens = iota(N);
          const straight = new Batcher(tokens, options);
          take(straight, before);
          const saved = JSON.parse(JSON.stringify(straight.state())) as ReturnType<Batcher['state']>;
          const expected = take(straight, after);
          const resumed = Batcher.resume(tokens, options, saved);
          expect(resumed.step).toBe(before);
          expect(take(resumed, after)).toEqual(expected);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads the same batches from an on-demand source as from an array', () => {
    const tokens = Uint16Array.from({ length: 3000 }, (_, i) => (i * 7919) % 65536);
    const options = { batchSize: 4, seqLen: 20, seed: 5 };
    const fromArray = take(new Batcher(tokens, options), 50);
    const fromSource = take(new Batcher(arrayTokenSource(tokens, 'mem'), options), 50);
    expect(fromSource).toEqual(fromArray);
  });

  it('a corpus too small for one batch is one clear error', () => {
    expect(() => new Batcher(iota(40), { batchSize: 8, seqLen: 16 })).toThrow(DataError);
    expect(() => new Batcher(arrayTokenSource(iota(40), '/cache/x.train.tokens'), { batchSize: 8, seqLen: 16 })).toThrow(
      '/cache/x.train.tokens: corpus too small for one batch: 40 tokens give 2 windows of seqLen + 1 = 17 tokens, batchSize 8 needs at least 129 tokens',
    );
    // Exactly enough: B * seqLen + 1 tokens.
    expect(new Batcher(iota(129), { batchSize: 8, seqLen: 16 }).batchesPerEpoch).toBe(1);
  });

  it('bad options and mismatched states are clear errors', () => {
    expect(() => new Batcher(iota(100), { batchSize: 0, seqLen: 4 })).toThrow('batchSize must be a positive integer, got 0');
    expect(() => new Batcher(iota(100), { batchSize: 2, seqLen: 2.5 })).toThrow('seqLen must be a positive integer, got 2.5');
    expect(() => new Batcher({} as never, { batchSize: 2, seqLen: 2 })).toThrow(/tokens must be a typed array/);
    const state = new Batcher(iota(100), { batchSize: 2, seqLen: 4, seed: 1 }).state();
    expect(() => Batcher.resume(iota(100), { batchSize: 2, seqLen: 8, seed: 1 }, state)).toThrow(
      'cannot resume: the state was saved with seqLen = 4, this batcher has 8',
    );
    expect(() => Batcher.resume(iota(101), { batchSize: 2, seqLen: 4, seed: 1 }, state)).toThrow(/numTokens = 100, this batcher has 101/);
    expect(() => Batcher.resume(iota(100), { batchSize: 2, seqLen: 4, seed: 1 }, { ...state, epochRng: [1, 2] })).toThrow(
      /malformed batcher state/,
    );
  });

  it('seed32 keeps 32-bit seeds and folds larger ones', () => {
    expect(seed32(0)).toBe(0);
    expect(seed32(12345)).toBe(12345);
    expect(seed32(2 ** 32 + 5)).not.toBe(seed32(5));
    expect(() => seed32(0.5)).toThrow(DataError);
  });
});
