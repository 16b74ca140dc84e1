// The one place that plugs feed-forward layers into @peer/model. The model builds 'dense' itself;
// the sparse kinds come from @peer/layer (PEER) and @peer/baselines (MoE, PKM). The trainer's
// optim.sparseLr / optim.sparseOptimizer become each sparse layer's table optimizer here, so that a
// config states them once, next to the dense optimizer.
import { PeerLayer } from '@peer/layer';
import { registerFeedForward, type FeedForwardFactoryArgs, type FeedForwardLayer } from '@peer/model';
import type { TrainConfig } from './config/schema.js';

type SparseOptim = Pick<TrainConfig['optim'], 'sparseLr' | 'sparseOptimizer'>;

function expertOptimizer(options: Record<string, unknown>, optim: SparseOptim): Record<string, unknown> {
  const given = typeof options.expertOptimizer === 'object' && options.expertOptimizer !== null ? options.expertOptimizer : {};
  return { ...given, kind: optim.sparseOptimizer, lr: optim.sparseLr };
}

/** Registers every available layer kind, with the sparse-table optimizer of `optim`. */
export function registerLayers(optim: SparseOptim): void {
  registerFeedForward(
    'peer',
    ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer =>
      new PeerLayer({ seed, ...options, dim, expertOptimizer: expertOptimizer(options, optim) }) as unknown as FeedForwardLayer,
  );
}
