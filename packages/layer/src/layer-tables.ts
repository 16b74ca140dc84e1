// The PEER layer's sparse optimizer from its config, through expert-store's factory (host or device
// optimizer, where the tables live).
import { createSparseOptimizer, type ExpertTable, type SparseTableOptimizer } from '@peer/expert-store';
import type { ExpertOptimizerConfig } from './config.js';

/** The sparse optimizer of `tables`, where they live. */
export function createLayerOptimizer(o: ExpertOptimizerConfig, tables: ExpertTable[]): SparseTableOptimizer {
  return o.kind === 'adam'
    ? createSparseOptimizer({ kind: 'adam', lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay }, tables)
    : createSparseOptimizer({ kind: 'sgd', lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay }, tables);
}
