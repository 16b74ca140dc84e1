// The model registers no layer itself: tests and benchmarks register the project's layers, each
// built from `{ seed, ...options, dim }` (the factory an application would write).
import { DenseFfw, MoeExpertChoice, MoeTokenChoice, ProductKeyMemory } from '@peer/baselines';
import type { FeedForwardKind, FeedForwardLayer } from '@peer/feed-forward';
import { PeerLayer } from '@peer/layer';
import { registerFeedForward, type FeedForwardFactory, type FeedForwardFactoryArgs } from './registry.js';

const LAYERS: Record<FeedForwardKind, new (options: never) => FeedForwardLayer> = {
  dense: DenseFfw,
  moe: MoeTokenChoice,
  'moe-ec': MoeExpertChoice,
  pkm: ProductKeyMemory,
  peer: PeerLayer,
};

/** Registers the dense FFW, MoE (both), PKM and PEER for every kind. */
export function registerProjectLayers(): void {
  for (const [kind, Layer] of Object.entries(LAYERS) as [FeedForwardKind, (typeof LAYERS)[FeedForwardKind]][]) {
    const factory: FeedForwardFactory = ({ dim, seed, options }: FeedForwardFactoryArgs) => new Layer({ seed, ...options, dim } as never);
    registerFeedForward(kind, factory);
  }
}
