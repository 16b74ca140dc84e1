// Which layer builds each feed-forward kind. The model names kinds in its config and asks this
// registry for them; it knows no concrete layer. The application (or a user) registers a factory
// per kind through `registerFeedForward` before building a model: the trainer registers the dense
// FFW, MoE and PKM of @peer/baselines and PEER of @peer/layer (apps/trainer/src/layers.ts).
import { FEED_FORWARD_KINDS, type FeedForwardKind, type FeedForwardLayer } from '@peer/feed-forward';

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
