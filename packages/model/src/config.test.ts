import { describe, expect, it } from 'vitest';
import { blockKinds, ModelConfigError, parseModelConfig } from './config.js';

describe('parseModelConfig', () => {
  it('fills the documented defaults', () => {
    expect(parseModelConfig({ vocabSize: 256 })).toEqual({
      vocabSize: 256,
      dim: 256,
      layers: 4,
      heads: 4,
      seqLen: 256,
      ffw: { kind: 'dense', hidden: 1024, options: {} },
      sparseBlocks: [2],
      tieEmbeddings: true,
      positions: 'rope',
      ropeBase: 10_000,
      dropout: 0,
      norm: 'layernorm',
      normEps: 1e-5,
      seed: 0,
    });
  });

  it('resolves the middle block, sorts explicit blocks, and is idempotent', () => {
    expect(parseModelConfig({ vocabSize: 10, layers: 12 }).sparseBlocks).toEqual([6]);
    expect(parseModelConfig({ vocabSize: 10, layers: 1 }).sparseBlocks).toEqual([0]);
    const c = parseModelConfig({ vocabSize: 10, layers: 5, sparseBlocks: [4, 1], ffw: { kind: 'peer', options: { experts: 16 } } });
    expect(c.sparseBlocks).toEqual([1, 4]);
    expect(parseModelConfig(c)).toEqual(c);
    expect(blockKinds(c)).toEqual(['dense', 'peer', 'dense', 'dense', 'peer']);
    expect(blockKinds(parseModelConfig({ vocabSize: 10, layers: 3 }))).toEqual(['dense', 'dense', 'dense']);
  });

  it.each([
    [{ vocabSize: 10, dim: 256, heads: 3 }, 'heads = 3: must divide dim (256)'],
    [{ vocabSize: 10, dim: 12, heads: 4 }, 'heads = 4: rope needs an even head width, dim / heads = 3'],
    [{ vocabSize: 10, layers: 4, sparseBlocks: [1, 4] }, 'sparseBlocks.1 = 4: block index out of range: the model has 4 blocks (0..3)'],
    [{ vocabSize: 10, sparseBlocks: [1, 1] }, 'sparseBlocks.1 = 1: repeated block index'],
    [{ vocabSize: 10, sparseBlocks: 'first' }, 'sparseBlocks = "first": expected "middle" or a list of block indices'],
    [{ vocabSize: 10, sparseBlocks: [-1] }, 'sparseBlocks.0 = -1'],
    [{}, 'vocabSize = undefined'],
    [{ vocabSize: 0 }, 'vocabSize = 0'],
    [{ vocabSize: 10, dim: '256' }, 'dim = "256"'],
    [{ vocabSize: 10, ffw: { kind: 'mlp' } }, 'ffw.kind = "mlp"'],
    [{ vocabSize: 10, ffw: { kind: 'dense', width: 3 } }, "unknown field 'width' in ffw"],
    [{ vocabSize: 10, layer: 3 }, "unknown field 'layer'"],
    [{ vocabSize: 10, dropout: 1 }, 'dropout = 1'],
    [{ vocabSize: 10, positions: 'alibi' }, 'positions = "alibi"'],
  ])('rejects %j with one line naming the field and value', (input, message) => {
    let error: unknown;
    try {
      parseModelConfig(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ModelConfigError);
    expect((error as Error).message).toContain('invalid model config: ');
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('accepts odd head widths with learned positions', () => {
    expect(parseModelConfig({ vocabSize: 10, dim: 12, heads: 4, positions: 'learned' }).heads).toBe(4);
  });
});
