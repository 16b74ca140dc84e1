// Lazy SGD (optionally with momentum) for ExpertTables: only touched rows are updated.
//   w <- w * (1 - lr * weightDecay)                 (decoupled; only when weightDecay > 0)
//   b <- momentum * b + g                           (only when momentum > 0; b is per row, lazy)
//   w <- w - lr * (momentum > 0 ? b : g)
//
// Axes: N table rows, d row width, U touched rows.
import { SparseOptimizer, type SparseOptimizerOptions } from './sparse-optimizer.js';
import { claimFresh, expectEntry, type NamedArray } from './named-array.js';
import type { ExpertTable } from './expert-table.js';
import type { RowSparseGrad } from './row-sparse-grad.js';

export interface SparseSgdOptions extends SparseOptimizerOptions {
  /** Heavy-ball momentum in [0, 1) (default 0: plain SGD, no state). */
  momentum?: number;
}

export interface SgdState {
  /** Momentum buffers [N * d] (empty without momentum). */
  momentum: Float32Array;
}

export class SparseSgd extends SparseOptimizer<SgdState> {
  readonly momentum: number;

  constructor(options: SparseSgdOptions, tables: readonly ExpertTable[] = []) {
    super(options, tables);
    const momentum = options.momentum ?? 0;
    if (!(momentum >= 0 && momentum < 1)) throw new Error(`SparseSgd: momentum must be in [0, 1), got ${momentum}`);
    this.momentum = momentum;
  }

  stateOf(table: ExpertTable): SgdState | undefined {
    return this.states.get(table);
  }

  protected createState(table: ExpertTable): SgdState {
    return { momentum: new Float32Array(this.momentum > 0 ? table.rows * table.dim : 0) };
  }

  protected applyRows(table: ExpertTable, state: SgdState, grad: RowSparseGrad, lr: number, gradScale: number): void {
    const w = table.data;
    const b = state.momentum;
    const rows = grad.uniqueRows();
    const grads = grad.rowGrads();
    const d = table.dim;
    const mu = this.momentum;
    const decay = 1 - lr * this.weightDecay;
    for (let s = 0; s < rows.length; s++) {
      const o = rows[s]! * d;
      const go = s * d;
      if (mu > 0) {
        for (let j = 0; j < d; j++) {
          const bj = mu * b[o + j]! + grads[go + j]! * gradScale;
          b[o + j] = bj;
          w[o + j] = decay * w[o + j]! - lr * bj;
        }
      } else {
        for (let j = 0; j < d; j++) w[o + j] = decay * w[o + j]! - lr * grads[go + j]! * gradScale;
      }
    }
  }

  protected entriesOf(table: ExpertTable, state: SgdState, prefix: string): NamedArray[] {
    if (this.momentum === 0) return [];
    return [{ name: `${prefix}${table.name}.sgd.momentum`, dtype: 'F32', shape: [table.rows, table.dim], data: state.momentum }];
  }

  protected loadInto(table: ExpertTable, state: SgdState, prefix: string, get: (name: string) => NamedArray | undefined): void {
    if (this.momentum === 0) return;
    const name = `${prefix}${table.name}.sgd.momentum`;
    const entry = expectEntry(name, get(name), { shape: [table.rows, table.dim], dtypes: ['F32'] });
    if (claimFresh(entry.data)) state.momentum = entry.data as Float32Array;
    else state.momentum.set(entry.data as Float32Array);
  }
}
