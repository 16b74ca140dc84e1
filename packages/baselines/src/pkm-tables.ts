// Where the PKM layer gets its value table, that table's gradient and its sparse optimizer:
// expert-store's factories, which give a host table (wasm memory) on the host engines and a device
// table on webgpu, so that the layer itself sees only the ExpertTable contract.
import { createExpertTable, createSparseOptimizer, type ExpertTable, type RowGradient, type SparseTableOptimizer } from '@peer/expert-store';
import type { PkmConfig } from './pkm-config.js';

export interface PkmTables {
  values: ExpertTable;
  valueGrad: RowGradient;
  valueOptimizer: SparseTableOptimizer;
}

/** The value table V [N, D] (seeded normal init), its row gradient and its optimizer. */
export function createPkmTables(c: PkmConfig, seed: number): PkmTables {
  const values = createExpertTable({ rows: c.memories, dim: c.dim, init: { kind: 'normal', std: c.valueInitStd }, seed, name: 'values' });
  const o = c.valueOptimizer;
  const common = { lr: o.lr, weightDecay: o.weightDecay, ...(o.clipNorm === undefined ? {} : { clipNorm: o.clipNorm }) };
  const valueOptimizer =
    o.kind === 'adam' ? createSparseOptimizer({ kind: 'adam', ...common, beta1: o.beta1, beta2: o.beta2, eps: o.eps }, [values]) : createSparseOptimizer({ kind: 'sgd', ...common }, [values]);
  return { values, valueGrad: values.createGradient(), valueOptimizer };
}
