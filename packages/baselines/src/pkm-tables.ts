// Where the PKM layer gets its value table, that table's gradient and its sparse optimizer: the one
// place that names a table class, so that the layer itself sees only the ExpertTable contract.
//
// INTEGRATION POINT (issue 15, Part A): on a device engine (webgpu) expert-store's
// `createExpertTable(options)`, `table.createGradient()` and `createSparseOptimizer(config, [table])`
// give DeviceExpertTable and its gradient and optimizer. Until they are on this branch the host
// classes are built here, and `prepareTableState` calls `prepareState()` where an object has one.
import { HostExpertTable, RowSparseGrad, SparseAdam, SparseSgd, type ExpertTable, type NamedArray, type RowGradient, type SparseStepResult } from '@peer/expert-store';
import type { PkmConfig } from './pkm-config.js';

/** What the layer uses of a sparse optimizer of expert tables (host or device). */
export interface TableOptimizer {
  step(table: ExpertTable, grad: RowGradient, lrScale?: number): SparseStepResult;
  stateEntries(prefix?: string): NamedArray[];
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
  dispose(): void;
}

export interface PkmTables {
  values: ExpertTable;
  valueGrad: RowGradient;
  valueOptimizer: TableOptimizer;
}

/** The value table V [N, D] (seeded normal init), its row gradient and its optimizer. */
export function createPkmTables(c: PkmConfig, seed: number): PkmTables {
  const values = new HostExpertTable({ rows: c.memories, dim: c.dim, init: { kind: 'normal', std: c.valueInitStd }, seed, name: 'values' });
  const o = c.valueOptimizer;
  const common = { lr: o.lr, weightDecay: o.weightDecay, ...(o.clipNorm === undefined ? {} : { clipNorm: o.clipNorm }) };
  const valueOptimizer = o.kind === 'adam' ? new SparseAdam({ ...common, beta1: o.beta1, beta2: o.beta2, eps: o.eps }, [values]) : new SparseSgd(common, [values]);
  valueOptimizer.track(values);
  return { values, valueGrad: new RowSparseGrad(values), valueOptimizer };
}

/** Awaits `prepareState()` of each table and optimizer that has one (a device engine's async read-back). */
export async function prepareTableState(parts: readonly object[]): Promise<void> {
  for (const part of parts) {
    const prepare = (part as { prepareState?: () => Promise<void> }).prepareState;
    if (typeof prepare === 'function') await prepare.call(part);
  }
}
