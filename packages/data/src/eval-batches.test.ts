import { describe, expect, it } from 'vitest';
import { DataError } from './errors.js';
import { bitsPerByte, countTokenBytes, EvalBatches } from './eval-batches.js';
import { createTokenizer } from './tokenizer.js';

const iota = (n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => i);

describe('EvalBatches', () => {
  it('visits every window once, in order, without overlap; reports coverage', () => {
    const N = 1000;
    const evals = new EvalBatches(iota(N), { batchSize: 7, seqLen: 16 });
    expect(evals.numWindows).toBe(62);
    expect(evals.numBatches).toBe(9);
    expect(evals.tokensCovered).toBe(62 * 16);
    expect(evals.tokensSkipped).toBe(N - 1 - 62 * 16);
    const targets: number[] = [];
    const rows: number[] = [];
    for (const batch of evals) {
      rows.push(batch.batchSize);
      expect(batch.targetBytes).toBeNull();
      for (let i = 0; i < batch.inputs.length; i++) expect(batch.targets[i]).toBe(batch.inputs[i]! + 1);
      targets.push(...batch.targets);
    }
    expect(rows).toEqual([7, 7, 7, 7, 7, 7, 7, 7, 6]);
    // Targets are tokens 1 .. 62 * 16, each exactly once, in order.
    expect(targets).toEqual(Array.from({ length: 62 * 16 }, (_, i) => i + 1));
    // Iterating again gives the same batches.
    expect([...evals]).toEqual([...evals]);
  });

  it('maxBatches takes evenly spaced windows', () => {
    const evals = new EvalBatches(iota(1001), { batchSize: 2, seqLen: 10, maxBatches: 5 });
    expect(evals.numWindows).toBe(10);
    expect(evals.tokensCovered).toBe(100);
    const starts = [...evals].flatMap((b) => [b.inputs[0], b.inputs[10]]);
    expect(starts).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
  });

  it('reports the UTF-8 bytes behind the targets (reference: decode each target and measure)', () => {
    const gpt2 = createTokenizer('gpt2');
    const tokens = Int32Array.from(gpt2.encode('Naïve café, déjà vu: bits per byte. '.repeat(40)));
    // Precondition of the reference: every token here is whole characters (no U+FFFD alone).
    for (const id of tokens) expect(gpt2.decode([id])).not.toContain('\uFFFD');
    const evals = new EvalBatches(tokens, { batchSize: 3, seqLen: 8, bytesPerToken: gpt2 });
    let total = 0;
    for (const batch of evals) {
      let reference = 0;
      for (const id of batch.targets) reference += Buffer.byteLength(gpt2.decode([id]), 'utf8');
      expect(batch.targetBytes).toBe(reference);
      total += reference;
    }
    expect(evals.bytesCovered()).toBe(total);
    expect(total).toBeGreaterThan(evals.tokensCovered); // some targets are multi-byte
  });

  it('a split shorter than one window is one clear error', () => {
    expect(() => new EvalBatches(iota(16), { batchSize: 1, seqLen: 16 })).toThrow(DataError);
    expect(() => new EvalBatches(iota(16), { batchSize: 1, seqLen: 16 })).toThrow(
      'tokens: evaluation split too small: 16 tokens, one window needs seqLen + 1 = 17',
    );
    expect(() => new EvalBatches(iota(100), { batchSize: 1, seqLen: 4, maxBatches: 0 })).toThrow('maxBatches must be a positive integer, got 0');
  });
});

describe('bits per byte', () => {
  it('is nats / (ln 2 * bytes)', () => {
    // A uniform model over 256 byte values costs exactly 8 bits per byte.
    expect(bitsPerByte(1000 * Math.log(256), 1000)).toBeCloseTo(8, 12);
    expect(bitsPerByte(Math.LN2 * 3, 3)).toBeCloseTo(1, 12);
    expect(() => bitsPerByte(1, 0)).toThrow(DataError);
  });

  it('countTokenBytes sums the UTF-8 lengths of the ids', () => {
    const byte = createTokenizer('byte');
    const ids = byte.encode('héllo');
    expect(countTokenBytes(ids, byte)).toBe(6);
    const gpt2 = createTokenizer('gpt2');
    expect(countTokenBytes(gpt2.encode('héllo wörld 🐋'), gpt2)).toBe(Buffer.byteLength('héllo wörld 🐋'));
    expect(countTokenBytes([gpt2.endOfText!], gpt2)).toBe(0);
  });
});
