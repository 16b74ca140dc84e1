// Where the PEER layer gets its expert tables and their sparse optimizer: expert-store's factories,
// which give host tables (wasm memory) on the host engines and device tables on webgpu, so that the
// layer itself sees only the ExpertTable contract.
import { createExpertTable, createSparseOptimizer, type ExpertTable, type ExpertTableOptions, type SparseTableOptimizer } from '@peer/expert-store';
import type { ExpertOptimizerConfig } from './config.js';

export type TableOptimizer = SparseTableOptimizer;

/** An expert table for the active engine. */
export function createLayerTable(options: ExpertTableOptions): ExpertTable {
  return createExpertTable(options);
}

/** The sparse optimizer of `tables`, where they live. */
export function createLayerOptimizer(o: ExpertOptimizerConfig, tables: ExpertTable[]): TableOptimizer {
  return o.kind === 'adam'
    ? createSparseOptimizer({ kind: 'adam', lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay }, tables)
    : createSparseOptimizer({ kind: 'sgd', lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay }, tables);
}

/** Awaits `prepareState()` of each table and optimizer (a device engine's async read-back). */
export async function prepareTableState(parts: readonly { prepareState(): Promise<void> }[]): Promise<void> {
  for (const part of parts) await part.prepareState();
}
