import { afterEach, describe, expect, it } from 'vitest';
import { DenseFfw } from '@peer/baselines';
import { createFeedForward, registerFeedForward, registeredFeedForwardKinds, unregisterFeedForward, type FeedForwardFactory } from './registry.js';

describe('feed-forward registry', () => {
  afterEach(() => {
    unregisterFeedForward('pkm');
  });

  it('has the dense FFW of @peer/baselines registered by default', () => {
    expect(registeredFeedForwardKinds()).toContain('dense');
    const layer = createFeedForward('dense', { dim: 8, blockIndex: 0, seed: 3, options: { hidden: 24, activation: 'relu' } });
    expect(layer).toBeInstanceOf(DenseFfw);
    expect((layer as DenseFfw).config).toMatchObject({ dim: 8, hidden: 24, activation: 'relu', seed: 3 });
    layer.dispose();
  });

  it('refuses unregistered and unknown kinds with a clear message', () => {
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
    expect(registerFeedForward('pkm', factory)).toBeUndefined();
    expect(registerFeedForward('pkm', factory)).toBe(factory);
    expect(registeredFeedForwardKinds()).toContain('pkm');
    createFeedForward('pkm', { dim: 6, blockIndex: 1, seed: 9, options: { k: 2 } }).dispose();
    expect(seen).toEqual([{ dim: 6, blockIndex: 1, seed: 9, options: { k: 2 } }]);
    expect(unregisterFeedForward('pkm')).toBe(true);
    expect(unregisterFeedForward('pkm')).toBe(false);
  });

  it('refuses a layer of the wrong width from a factory', () => {
    registerFeedForward('pkm', () => new DenseFfw({ dim: 5 }) as never);
    expect(() => createFeedForward('pkm', { dim: 6, blockIndex: 0, seed: 0, options: {} })).toThrow(
      "the 'pkm' factory built a layer of width 5 for a model of width 6",
    );
  });
});
