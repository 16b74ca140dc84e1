// The one place that plugs feed-forward layers into @peer/model, which knows none itself: the dense
// FFW, MoE token/expert choice and PKM come from @peer/baselines, PEER from @peer/layer.
// The trainer's optim.sparseLr / optim.sparseOptimizer become the table optimizer of PEER's expert
// tables and PKM's value table here, so that a config states them once, next to the dense optimizer.
import { DenseFfw, MoeExpertChoice, MoeTokenChoice, ProductKeyMemory } from '@peer/baselines';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { PeerLayer } from '@peer/layer';
import { registerFeedForward, type FeedForwardFactoryArgs } from '@peer/model';
import type { TrainConfig } from './config/schema.js';

/** Experts of an MoE layer whose options name none. */
export const MOE_DEFAULT_EXPERTS = 8;

type SparseOptim = Pick<TrainConfig['optim'], 'sparseLr' | 'sparseOptimizer'>;

/** `options[key]` (an optimizer section the user may have given) with kind and lr from optim. */
function tableOptimizer(options: Record<string, unknown>, key: string, optim: SparseOptim): Record<string, unknown> {
  const given = options[key];
  const base = typeof given === 'object' && given !== null ? (given as Record<string, unknown>) : {};
  return { ...base, kind: optim.sparseOptimizer, lr: optim.sparseLr };
}

/** Registers every feed-forward kind, the sparse ones with the sparse-table optimizer of `optim`. */
export function registerLayers(optim: SparseOptim): void {
  const dense = ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer => new DenseFfw({ seed, ...options, dim });
  const peer = ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer =>
    new PeerLayer({ seed, ...options, dim, expertOptimizer: tableOptimizer(options, 'expertOptimizer', optim) });
  const pkm = ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer =>
    new ProductKeyMemory({ seed, ...options, dim, valueOptimizer: tableOptimizer(options, 'valueOptimizer', optim) });
  const moe = ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer => new MoeTokenChoice({ seed, experts: MOE_DEFAULT_EXPERTS, ...options, dim });
  const moeEc = ({ dim, seed, options }: FeedForwardFactoryArgs): FeedForwardLayer => new MoeExpertChoice({ seed, experts: MOE_DEFAULT_EXPERTS, ...options, dim });
  registerFeedForward('dense', dense);
  registerFeedForward('peer', peer);
  registerFeedForward('pkm', pkm);
  registerFeedForward('moe', moe);
  registerFeedForward('moe-ec', moeEc);
}
