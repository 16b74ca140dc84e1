import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DenseFfw, MoeExpertChoice, MoeTokenChoice, ProductKeyMemory } from '@peer/baselines';
import { PeerLayer } from '@peer/layer';
import {
  createFeedForward,
  feedForwardFactory,
  registerFeedForward,
  registeredFeedForwardKinds,
  unregisterFeedForward,
  type FeedForwardFactory,
} from './registry.js';

describe('feed-forward registry', () => {
  let pkmDefault: FeedForwardFactory | undefined;
  beforeEach(() => {
    pkmDefault = feedForwardFactory('pkm');
  });
  afterEach(() => {
    if (pkmDefault) registerFeedForward('pkm', pkmDefault);
  });

  it('starts with every kind registered to the project layers, built from { seed, ...options, dim }', () => {
    expect(registeredFeedForwardKinds()).toEqual(['dense', 'moe', 'moe-ec', 'pkm', 'peer']);
    const dense = createFeedForward('dense', { dim: 8, blockIndex: 0, seed: 3, options: { hidden: 24, activation: 'relu' } });
    expect(dense).toBeInstanceOf(DenseFfw);
    expect((dense as DenseFfw).config).toMatchObject({ dim: 8, hidden: 24, activation: 'relu', seed: 3 });
    const built = [
      createFeedForward('moe', { dim: 8, blockIndex: 1, seed: 1, options: { experts: 4, topK: 2, hidden: 8 } }),
      createFeedForward('moe-ec', { dim: 8, blockIndex: 1, seed: 1, options: { experts: 4, hidden: 8 } }),
      createFeedForward('pkm', { dim: 8, blockIndex: 1, seed: 1, options: { memories: 16, heads: 2, topK: 2 } }),
      createFeedForward('peer', { dim: 8, blockIndex: 1, seed: 1, options: { numExperts: 16, heads: 2, topK: 2 } }),
    ];
    expect(built[0]).toBeInstanceOf(MoeTokenChoice);
    expect(built[1]).toBeInstanceOf(MoeExpertChoice);
    expect(built[2]).toBeInstanceOf(ProductKeyMemory);
    expect(built[3]).toBeInstanceOf(PeerLayer);
    expect(built.map((l) => [l.kind, l.dim])).toEqual([
      ['moe', 8],
      ['moe-ec', 8],
      ['pkm', 8],
      ['peer', 8],
    ]);
    for (const l of [dense, ...built]) l.dispose();
  });

  it('refuses unregistered and unknown kinds with a clear message', () => {
    unregisterFeedForward('pkm');
    expect(() => createFeedForward('pkm', { dim: 8, blockIndex: 2, seed: 0, options: {} })).toThrow(
      "no feed-forward layer is registered for kind 'pkm' (block 2): call registerFeedForward('pkm', factory)",
    );
    expect(() => registerFeedForward('mlp' as never, (() => undefined) as never)).toThrow("unknown feed-forward kind 'mlp'");
  });

  it('replaces and removes registrations, passing the factory arguments through', () => {
    const seen: unknown[] = [];
    const factory: FeedForwardFactory = (args) => {
      seen.push(args);
      return new DenseFfw({ dim: args.dim, hidden: 4 }) as never;
    };
    expect(registerFeedForward('pkm', factory)).toBe(pkmDefault);
    expect(registerFeedForward('pkm', factory)).toBe(factory);
    expect(feedForwardFactory('pkm')).toBe(factory);
    createFeedForward('pkm', { dim: 6, blockIndex: 1, seed: 9, options: { k: 2 } }).dispose();
    expect(seen).toEqual([{ dim: 6, blockIndex: 1, seed: 9, options: { k: 2 } }]);
    expect(unregisterFeedForward('pkm')).toBe(true);
    expect(unregisterFeedForward('pkm')).toBe(false);
    expect(registeredFeedForwardKinds()).not.toContain('pkm');
  });

  it('refuses a layer of the wrong width from a factory', () => {
    registerFeedForward('pkm', () => new DenseFfw({ dim: 5 }) as never);
    expect(() => createFeedForward('pkm', { dim: 6, blockIndex: 0, seed: 0, options: {} })).toThrow(
      "the 'pkm' factory built a layer of width 5 for a model of width 6",
    );
  });
});
