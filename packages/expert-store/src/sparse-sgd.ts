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
import { ArenaArray } from './wasm/arena.js';

export interface SparseSgdOptions extends SparseOptimizerOptions {
  /** Heavy-ball momentum in [0, 1) (default 0: plain SGD, no state). */
  momentum?: number;
}

export interface SgdState {
  /** Momentum buffers [N * d] (empty without momentum). */
  momentum: Float32Array;
}

interface SgdSlots {
  momentum: ArenaArray<Float32Array> | Float32Array;
}

const live = (a: ArenaArray<Float32Array> | Float32Array): Float32Array => (a instanceof ArenaArray ? a.array : a);

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
    return slots ? { momentum: live(slots.momentum) } : undefined;
  }

  protected createState(table: ExpertTable): SgdSlots {
    const size = this.momentum > 0 ? table.rows * table.dim : 0;
    const inArena = size > 0 && table.arena ? ArenaArray.alloc(table.arena, size, Float32Array) : undefined;
    return { momentum: inArena ?? new Float32Array(size) };
  }

  protected applyRows(table: ExpertTable, state: SgdSlots, grad: RowSparseGrad, lr: number, gradScale: number): void {
    const d = table.dim;
    const mu = this.momentum;
    const decay = 1 - lr * this.weightDecay;
    const arena = table.arena;
    const layout = arena ? grad.arenaLayout(arena) : undefined;
    if (arena && layout && d % 4 === 0 && (mu === 0 || state.momentum instanceof ArenaArray)) {
      const bOffset = state.momentum instanceof ArenaArray ? state.momentum.offset : 0;
      grad.slotsInRowOrder(); // fills the slot order the kernel reads at layout.orderOffset
      arena.kernels.sgd(grad.size, layout.orderOffset, layout.rowsOffset, layout.valuesOffset, table.arenaOffset!, bOffset, d * 4, lr, mu, decay, gradScale, mu > 0 ? 1 : 0);
      return;
    }
    const w = table.data;
    const b = live(state.momentum);
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

  protected entriesOf(table: ExpertTable, state: SgdSlots, prefix: string): NamedArray[] {
    if (this.momentum === 0) return [];
    return [{ name: `${prefix}${table.name}.sgd.momentum`, dtype: 'F32', shape: [table.rows, table.dim], data: live(state.momentum) }];
  }

  protected loadInto(table: ExpertTable, state: SgdSlots, prefix: string, get: (name: string) => NamedArray | undefined): void {
    if (this.momentum === 0) return;
    const name = `${prefix}${table.name}.sgd.momentum`;
    const entry = expectEntry(name, get(name), { shape: [table.rows, table.dim], dtypes: ['F32'] });
    if (state.momentum instanceof ArenaArray) state.momentum.array.set(entry.data as Float32Array);
    else if (claimFresh(entry.data)) state.momentum = entry.data as Float32Array;
    else state.momentum.set(entry.data as Float32Array);
  }
}
