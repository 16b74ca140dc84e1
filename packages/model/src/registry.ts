// Which layer builds each feed-forward kind. The model names kinds in its config and asks this
// registry for them, so that layers from any package (or a user's own) plug in through
// `registerFeedForward`. Every kind starts registered with the project's layer, built from
// `{ seed, ...options, dim }`: dense FFW, MoE token choice ('moe'), MoE expert choice ('moe-ec') and
// PKM from @peer/baselines, PEER from @peer/layer. Applications replace them to add settings the
// options do not carry (the trainer passes its sparse-table optimizer this way).
import {
  DenseFfw,
  MoeExpertChoice,
  MoeTokenChoice,
  ProductKeyMemory,
  type DenseFfwConfigInput,
  type MoeExpertChoiceOptions,
  type MoeTokenChoiceOptions,
  type PkmOptions,
} from '@peer/baselines';
import { PeerLayer, type PeerLayerConfig } from '@peer/layer';
import { FEED_FORWARD_KINDS } from './config.js';
import type { FeedForwardKind, FeedForwardLayer } from './feed-forward.js';

export interface FeedForwardFactoryArgs {
  /** Model width D. */
  dim: number;
  /** Index of the block the layer serves. */
  blockIndex: number;
  /** Seed for the layer's initialization (derived from the model seed and the block index). */
  seed: number;
  /** The config's `ffw.options` (sparse blocks), or `{ hidden, ...}` for dense blocks. */
  options: Record<string, unknown>;
}

export type FeedForwardFactory = (args: FeedForwardFactoryArgs) => FeedForwardLayer;

// One registry per process, even when both the ESM and the CJS build of this package are loaded.
const REGISTRY = Symbol.for('@peer/model/feed-forward-registry');
const registry: Map<FeedForwardKind, FeedForwardFactory> = ((globalThis as Record<symbol, unknown>)[REGISTRY] ??= new Map()) as Map<
  FeedForwardKind,
  FeedForwardFactory
>;

function checkKind(kind: string): asserts kind is FeedForwardKind {
  if (!(FEED_FORWARD_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`unknown feed-forward kind '${kind}': expected one of ${FEED_FORWARD_KINDS.join(', ')}`);
  }
}

/** Makes `kind` build its layers with `factory`, replacing an earlier registration; returns the one replaced. */
export function registerFeedForward(kind: FeedForwardKind, factory: FeedForwardFactory): FeedForwardFactory | undefined {
  checkKind(kind);
  if (typeof factory !== 'function') throw new Error(`registerFeedForward('${kind}'): factory must be a function`);
  const previous = registry.get(kind);
  registry.set(kind, factory);
  return previous;
}

/** Removes the registration of `kind`; returns whether there was one. */
export function unregisterFeedForward(kind: FeedForwardKind): boolean {
  return registry.delete(kind);
}

/** The factory registered for `kind`, if any (e.g. to restore it after replacing it). */
export function feedForwardFactory(kind: FeedForwardKind): FeedForwardFactory | undefined {
  return registry.get(kind);
}

/** The kinds a model can be built with right now. */
export function registeredFeedForwardKinds(): FeedForwardKind[] {
  return FEED_FORWARD_KINDS.filter((k) => registry.has(k));
}

/** Builds the layer of `kind` for one block; throws a clear error for a kind nobody registered. */
export function createFeedForward(kind: FeedForwardKind, args: FeedForwardFactoryArgs): FeedForwardLayer {
  checkKind(kind);
  const factory = registry.get(kind);
  if (!factory) {
    throw new Error(
      `no feed-forward layer is registered for kind '${kind}' (block ${args.blockIndex}): call registerFeedForward('${kind}', factory) ` +
        `before creating the model (registered: ${registeredFeedForwardKinds().join(', ') || 'none'})`,
    );
  }
  const layer = factory(args);
  if (layer.dim !== args.dim) {
    layer.dispose();
    throw new Error(`the '${kind}' factory built a layer of width ${layer.dim} for a model of width ${args.dim} (block ${args.blockIndex})`);
  }
  return layer;
}

/** The layer's options: the config's `ffw.options` with the model's seed and width; each layer validates them. */
function layerOptions<T>({ dim, seed, options }: FeedForwardFactoryArgs): T {
  return { seed, ...options, dim } as T;
}

const DEFAULT_FACTORIES: Record<FeedForwardKind, FeedForwardFactory> = {
  dense: (args) => new DenseFfw(layerOptions<DenseFfwConfigInput>(args)),
  moe: (args) => new MoeTokenChoice(layerOptions<MoeTokenChoiceOptions>(args)),
  'moe-ec': (args) => new MoeExpertChoice(layerOptions<MoeExpertChoiceOptions>(args)),
  pkm: (args) => new ProductKeyMemory(layerOptions<PkmOptions>(args)),
  peer: (args) => new PeerLayer(layerOptions<PeerLayerConfig>(args)),
};

// Registered once per process; a registration made earlier (e.g. by the other build of this package) wins.
for (const kind of FEED_FORWARD_KINDS) if (!registry.has(kind)) registry.set(kind, DEFAULT_FACTORIES[kind]);
