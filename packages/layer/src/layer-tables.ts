// Where the PEER layer gets its expert tables and their sparse optimizer: the one place that names a
// table class, so that the layer itself sees only the ExpertTable contract of @peer/expert-store.
//
// INTEGRATION POINT (issue 15, Part A): expert-store's `createExpertTable(options)` and
// `createSparseOptimizer(config, tables)` pick DeviceExpertTable and its optimizers on a device
// engine (webgpu). Until they are on this branch both functions below build the host classes, and
// `prepareTableState` calls `prepareState()` where an object has one.
import type { ExpertTableOptions, ExpertTable, NamedArray, RowGradient, SparseStepResult } from '@peer/expert-store';
import { HostExpertTable, SparseAdam, SparseSgd } from '@peer/expert-store';
import type { ExpertOptimizerConfig } from './config.js';

/** What the layer uses of a sparse optimizer of expert tables (host or device). */
export interface TableOptimizer {
  step(table: ExpertTable, grad: RowGradient, lrScale?: number): SparseStepResult;
  stateEntries(prefix?: string): NamedArray[];
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
  dispose(): void;
}

/** An expert table for the active engine. */
export function createLayerTable(options: ExpertTableOptions): ExpertTable {
  return new HostExpertTable(options);
}

/** The sparse optimizer of `tables`, where they live. */
export function createLayerOptimizer(o: ExpertOptimizerConfig, tables: ExpertTable[]): TableOptimizer {
  return o.kind === 'adam'
    ? new SparseAdam({ lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay }, tables)
    : new SparseSgd({ lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay }, tables);
}

/** Awaits `prepareState()` of each table and optimizer that has one (a device engine's async read-back). */
export async function prepareTableState(parts: readonly object[]): Promise<void> {
  for (const part of parts) {
    const prepare = (part as { prepareState?: () => Promise<void> }).prepareState;
    if (typeof prepare === 'function') await prepare.call(part);
  }
}
