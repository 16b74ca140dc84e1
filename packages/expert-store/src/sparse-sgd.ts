// Lazy SGD (optionally with momentum) for ExpertTables: only touched rows are updated.
//   w <- w * (1 - lr * weightDecay)                 (decoupled; only when weightDecay > 0)
//   b <- momentum * b + g                           (only when momentum > 0; b is per row, lazy)
//   w <- w - lr * (momentum > 0 ? b : g)
//
// Axes: N table rows, D row width, U touched rows.
import { SparseOptimizer, type SparseOptimizerOptions } from './sparse-optimizer.js';
import { claimFresh, expectEntry, type NamedArray } from './named-array.js';
import type { ExpertTable } from './expert-table.js';
import type { HostExpertTable } from './host-expert-table.js';
import { HostBlock } from './host-block.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { arenaOf } from './table-arena.js';
import { runOptimizerPass } from './wasm/optimizer-kernels.js';

export interface SparseSgdOptions extends SparseOptimizerOptions {
  /** Heavy-ball momentum in [0, 1) (default 0: plain SGD, no state). */
  momentum?: number;
}

export interface SgdState {
  /** Momentum buffers [N * D] (empty without momentum). */
  momentum: Float32Array;
}

interface SgdSlots {
  momentum: HostBlock<Float32Array>;
}

export class SparseSgd extends SparseOptimizer<SgdSlots> {
  readonly momentum: number;

  constructor(options: SparseSgdOptions, tables: readonly ExpertTable[] = []) {
    super(options, tables);
    const momentum = options.momentum ?? 0;
    if (!(momentum >= 0 && momentum < 1)) throw new Error(`SparseSgd: momentum must be in [0, 1), got ${momentum}`);
    this.momentum = momentum;
  }

  stateOf(table: ExpertTable): SgdState | undefined {
    const slots = this.lookup(table);
    return slots ? { momentum: slots.momentum.array } : undefined;
  }

  protected createState(table: HostExpertTable): SgdSlots {
    const size = this.momentum > 0 ? table.rows * table.dim : 0;
    return { momentum: HostBlock.alloc(size > 0 ? arenaOf(table) : undefined, size, Float32Array) };
  }

  protected applyRows(table: HostExpertTable, state: SgdSlots, grad: RowSparseGrad, lr: number, gradScale: number): void {
    const d = table.dim;
    const mu = this.momentum;
    const decay = 1 - lr * this.weightDecay;
    const arena = arenaOf(table);
    const kernels = table.optimizerKernels();
    const layout = grad.arenaLayout(arena);
    const wPtr = table.rowsOffsetIn(arena);
    const bPtr = state.momentum.offsetIn(arena);
    if (kernels && layout && wPtr !== undefined && d % 4 === 0 && (mu === 0 || bPtr !== undefined)) {
      grad.slotsInRowOrder(); // fills the slot order the kernel reads at layout.orderOffset
      const a = { count: grad.size, orderPtr: layout.orderOffset, rowsPtr: layout.rowsOffset, gradPtr: layout.valuesOffset, wPtr, bPtr: bPtr ?? 0, dBytes: d * 4 };
      // Rows split over the kernel pool's threads (see runOptimizerPass): each row updated by one thread.
      runOptimizerPass(arena!.memory, 'sgd', a.count, (s0, s1) => [s1 - s0, a.orderPtr + s0 * 4, a.rowsPtr, a.gradPtr, a.wPtr, a.bPtr, a.dBytes, lr, mu, decay, gradScale, mu > 0 ? 1 : 0]);
      return;
    }
    const w = table.data;
    const b = state.momentum.array;
    const rows = grad.uniqueRows();
    const grads = grad.rowGrads();
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

  protected entriesOf(table: HostExpertTable, state: SgdSlots, prefix: string): NamedArray[] {
    if (this.momentum === 0) return [];
    return [{ name: `${prefix}${table.name}.sgd.momentum`, dtype: 'F32', shape: [table.rows, table.dim], data: state.momentum.array }];
  }

  protected loadInto(table: HostExpertTable, state: SgdSlots, prefix: string, get: (name: string) => NamedArray | undefined): void {
    if (this.momentum === 0) return;
    const name = `${prefix}${table.name}.sgd.momentum`;
    const entry = expectEntry(name, get(name), { shape: [table.rows, table.dim], dtypes: ['F32'] });
    state.momentum.take(entry.data as Float32Array, claimFresh(entry.data));
  }
}
