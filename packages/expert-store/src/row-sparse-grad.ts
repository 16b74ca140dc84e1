// The gradient of one [N, D] table, kept row-sparse: only the rows a step touched, each once, with
// the gradients of repeated lookups summed. A row -> slot map (one int per table row, reset in
// O(touched) by `clear`) finds a row's slot; slot values live in one growable [slots, D] buffer.
// No [N, D] buffer is ever built.
//
// When the table keeps its rows in an arena, the slots live in the same arena, where the SIMD
// optimizer kernels read them in place.
//
// Axes: N table rows, D row width, L looked-up rows, U unique rows (slots).
import * as tf from '@tensorflow/tfjs-core';
import type { Arena } from '@peer/backend/wasm';
import { HostBlock } from './host-block.js';
import { rowBits, sortByRow } from './row-sort.js';
import { arenaOf } from './table-arena.js';

export interface RowSparseGradOptions {
  /**
   * Slots allocated up front (default: min(rows, 65536) in a table's arena, where the space is
   * reserved and costs nothing until used; else 4096). The buffer doubles when full.
   */
  initialCapacity?: number;
}

/**
 * The occurrences of one mixture call grouped by table row (see `groupOccurrences`), in the
 * gradient's memory: order [L] lists the occurrences group after group, groupEnd [U] ends each
 * group, groupSlot [U] is each group's gradient slot (~slot for a slot that already held a gradient).
 */
export interface OccurrenceGroups {
  groups: number;
  order: HostBlock<Int32Array>;
  groupEnd: HostBlock<Int32Array>;
  groupSlot: HostBlock<Int32Array>;
}

export class RowSparseGrad {
  readonly rows: number;
  readonly dim: number;
  /** slotOf[row] = slot + 1, or 0 for an untouched row. */
  private readonly slotOf: Int32Array;
  private slotRows!: HostBlock<Int32Array>;
  private values!: HostBlock<Float32Array>;
  /** Slots in ascending row order (see `slotsInRowOrder`), beside the rows. */
  private order!: HostBlock<Int32Array>;
  private sortScratch = new Int32Array(0);
  private capacity = 0;
  private count = 0;
  /** Whether slots were handed out in ascending row order since the last clear (no sort needed). */
  private ascending = true;
  /** The arena of the table, where slots are kept while they fit. */
  private readonly arena: Arena | undefined;
  /** Grouping scratch, beside the slots (grown on demand). */
  private groupOrder: HostBlock<Int32Array> | undefined;
  private groupEnds: HostBlock<Int32Array> | undefined;
  private groupSlots: HostBlock<Int32Array> | undefined;

  /** For a table (anything with `rows` and `dim`, e.g. an ExpertTable). */
  constructor(table: { readonly rows: number; readonly dim: number }, options: RowSparseGradOptions = {}) {
    const { rows, dim } = table;
    if (!Number.isSafeInteger(rows) || rows <= 0) throw new Error(`RowSparseGrad: rows must be a positive integer, got ${rows}`);
    if (!Number.isSafeInteger(dim) || dim <= 0) throw new Error(`RowSparseGrad: dim must be a positive integer, got ${dim}`);
    this.arena = arenaOf(table);
    const capacity = options.initialCapacity ?? (this.arena ? Math.min(rows, 65536) : 4096);
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new Error(`RowSparseGrad: initialCapacity must be a positive integer, got ${capacity}`);
    this.rows = rows;
    this.dim = dim;
    this.slotOf = new Int32Array(rows);
    this.allocate(Math.min(capacity, rows));
  }

  /** Slot storage for `capacity` rows (in the arena while it fits), keeping current slots. */
  private allocate(capacity: number): void {
    const rows = HostBlock.alloc(this.arena, capacity, Int32Array);
    const values = HostBlock.alloc(this.arena, capacity * this.dim, Float32Array);
    const order = HostBlock.alloc(this.arena, capacity, Int32Array);
    if (this.capacity > 0) {
      // Fresh views of the old slots: allocation may have grown the memory.
      rows.array.set(this.slotRows.array.subarray(0, this.count));
      values.array.set(this.values.array.subarray(0, this.count * this.dim));
    }
    this.slotRows = rows;
    this.values = values;
    this.order = order;
    this.capacity = capacity;
  }

  /**
   * Byte offsets of the slot rows, values and row order in `arena`, if they all live there
   * (internal: for the SIMD kernels).
   */
  arenaLayout(arena: Arena | undefined): { rowsOffset: number; valuesOffset: number; orderOffset: number } | undefined {
    const rowsOffset = this.slotRows.offsetIn(arena);
    const valuesOffset = this.values.offsetIn(arena);
    const orderOffset = this.order.offsetIn(arena);
    if (rowsOffset === undefined || valuesOffset === undefined || orderOffset === undefined) return undefined;
    return { rowsOffset, valuesOffset, orderOffset };
  }

  /** The gradient values [capacity, D] (internal: the mixture sums straight into slots). */
  valuesBlock(): HostBlock<Float32Array> {
    return this.values;
  }

  /**
   * The slots sorted by ascending row [U] (computed now; a view valid until the next accumulate or
   * clear): `uniqueRows()[order[0]]` is the smallest touched row. The optimizers walk the touched
   * rows in this order, at ascending addresses: over a table far larger than the caches the row
   * jumps become forward strides, cheaper than first-touch order (expert-store README). O(U log U).
   */
  slotsInRowOrder(): Int32Array {
    const u = this.count;
    const order = this.order.array.subarray(0, u);
    if (this.ascending) {
      for (let s = 0; s < u; s++) order[s] = s;
      return order;
    }
    if (this.sortScratch.length < u) this.sortScratch = new Int32Array(this.capacity);
    const sorted = this.sortScratch.subarray(0, u);
    sorted.set(this.slotRows.array.subarray(0, u));
    sorted.sort();
    const slotOf = this.slotOf;
    for (let s = 0; s < u; s++) order[s] = slotOf[sorted[s]!]! - 1;
    return order;
  }

  /** Number of distinct rows touched since the last clear (U). */
  get size(): number {
    return this.count;
  }

  /** The touched rows in first-touch order [U] (a view, valid until the next accumulate or clear). */
  uniqueRows(): Int32Array {
    return this.slotRows.array.subarray(0, this.count);
  }

  /** Summed gradients of the touched rows [U * D], in the order of `uniqueRows` (a live view). */
  rowGrads(): Float32Array {
    return this.values.array.subarray(0, this.count * this.dim);
  }

  /** The summed gradient of slot `s` (a live view). */
  slotGrad(s: number): Float32Array {
    if (!(s >= 0 && s < this.count)) throw new Error(`RowSparseGrad.slotGrad: slot ${s} is out of range [0, ${this.count})`);
    return this.values.array.subarray(s * this.dim, (s + 1) * this.dim);
  }

  /** The summed gradient of table row `row`, or undefined if untouched (a live view). */
  gradOfRow(row: number): Float32Array | undefined {
    const s = this.slotOf[row];
    return s !== undefined && s > 0 ? this.values.array.subarray((s - 1) * this.dim, s * this.dim) : undefined;
  }

  private grow(needed: number): void {
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    this.allocate(Math.min(capacity, this.rows));
  }

  /**
   * Adds `rowGrads` ([L * D]) to rows `indices` ([L]); a row listed several times (here or in
   * earlier calls since `clear`) gets the sum. First touches copy, repeats add.
   */
  accumulate(indices: Int32Array, rowGrads: Float32Array): void {
    const d = this.dim;
    const n = indices.length;
    if (!(indices instanceof Int32Array)) throw new Error(`RowSparseGrad.accumulate: indices must be an Int32Array, got ${(indices as object)?.constructor?.name}`);
    if (!(rowGrads instanceof Float32Array)) throw new Error(`RowSparseGrad.accumulate: rowGrads must be a Float32Array, got ${(rowGrads as object)?.constructor?.name}`);
    if (rowGrads.length !== n * d) throw new Error(`RowSparseGrad.accumulate: rowGrads has length ${rowGrads.length}, expected ${n} indices x ${d} = ${n * d}`);
    const slotOf = this.slotOf;
    let fresh = 0;
    for (let k = 0; k < n; k++) {
      const row = indices[k]!;
      if (!(row >= 0 && row < this.rows)) throw new Error(`RowSparseGrad.accumulate: indices[${k}] = ${row} is out of range [0, ${this.rows})`);
      if (slotOf[row] === 0) fresh++;
    }
    // `fresh` may count a row twice if it repeats within this call: an upper bound is enough.
    if (this.count + fresh > this.capacity) this.grow(this.count + fresh);
    const values = this.values.array;
    const slotRows = this.slotRows.array;
    // A run of fresh rows fills consecutive slots from consecutive gradients: one copy per run (a
    // layer hands over each distinct row once, so a whole call is usually one run). Per-row copies
    // cost a view and a call per row (expert-store README).
    let runStart = 0;
    let runSlot = -1;
    const flush = (end: number) => {
      if (runSlot >= 0) values.set(rowGrads.subarray(runStart * d, end * d), runSlot * d);
      runSlot = -1;
    };
    for (let k = 0; k < n; k++) {
      const row = indices[k]!;
      const s = slotOf[row]!;
      if (s === 0) {
        const slot = this.count++;
        slotOf[row] = slot + 1;
        if (slot > 0 && slotRows[slot - 1]! > row) this.ascending = false;
        slotRows[slot] = row;
        if (runSlot < 0) {
          runStart = k;
          runSlot = slot;
        }
      } else {
        flush(k);
        const src = k * d;
        const dst = (s - 1) * d;
        for (let j = 0; j < d; j++) values[dst + j]! += rowGrads[src + j]!;
      }
    }
    flush(n);
  }

  /** Multiplies every accumulated gradient by `factor` (e.g. a clipping scale). */
  scale(factor: number): void {
    const v = this.values.array;
    const end = this.count * this.dim;
    for (let i = 0; i < end; i++) v[i]! *= factor;
  }

  /** Sum of squares of the accumulated gradient, in float64. */
  sumOfSquares(): number {
    const v = this.values.array;
    const end = this.count * this.dim;
    let s = 0;
    for (let i = 0; i < end; i++) s += v[i]! * v[i]!;
    return s;
  }

  /** `sumOfSquares` as a scalar tensor (the interface's engine-neutral form; the caller disposes it). */
  sumOfSquaresTensor(): tf.Scalar {
    return tf.scalar(this.sumOfSquares());
  }

  /** Euclidean norm of the accumulated gradient. */
  norm(): number {
    return Math.sqrt(this.sumOfSquares());
  }

  /** Forgets every touched row, in O(U). */
  clear(): void {
    const slotOf = this.slotOf;
    const rows = this.slotRows.array;
    for (let s = 0; s < this.count; s++) slotOf[rows[s]!] = 0;
    this.count = 0;
    this.ascending = true;
  }

  /**
   * Groups the occurrences `indices` ([L] table rows, already range-checked) of one mixture call by
   * row and gives every distinct row its gradient slot: the one grouping of a step, which the
   * mixture's group-sum kernel then writes through (no second map, no copy of row gradients).
   *
   * Groups come in ascending row order, and rows new since `clear` get slots in that order, so that
   * the accumulation and the sparse optimizer walk the table forward. Within a group, occurrences
   * keep their order (the summation order of each row's gradient). O(L) integer work: a stable
   * radix sort of the occurrences by row (see `sortByRow`), then one forward walk over their rows.
   */
  groupOccurrences(indices: Int32Array): OccurrenceGroups {
    const n = indices.length;
    const slotOf = this.slotOf;
    const { rows: sorted, perm, ends: sortedEnds } = sortByRow(indices, rowBits(this.rows));
    const u = sortedEnds.length;
    // Group g's row is sorted[start of g]; rows come in ascending order, so the lookups below walk
    // slotOf forward, not at random.
    const rowOf = (g: number) => sorted[g === 0 ? 0 : sortedEnds[g - 1]!]!;
    let fresh = 0;
    for (let g = 0; g < u; g++) if (slotOf[rowOf(g)] === 0) fresh++;
    if (this.count + fresh > this.capacity) this.grow(this.count + fresh);
    this.groupOrder = this.scratch(this.groupOrder, n);
    this.groupEnds = this.scratch(this.groupEnds, u);
    this.groupSlots = this.scratch(this.groupSlots, u);
    // Views only after the allocations above (they may grow the arena).
    const groupSlot = this.groupSlots.array;
    const slotRows = this.slotRows.array;
    for (let g = 0; g < u; g++) {
      const row = rowOf(g);
      const s = slotOf[row]!;
      if (s === 0) {
        const slot = this.count++;
        if (slot > 0 && slotRows[slot - 1]! > row) this.ascending = false;
        slotRows[slot] = row;
        slotOf[row] = slot + 1;
        groupSlot[g] = slot;
      } else {
        groupSlot[g] = ~(s - 1);
      }
    }
    this.groupEnds.array.set(sortedEnds);
    this.groupOrder.array.set(perm);
    return { groups: u, order: this.groupOrder, groupEnd: this.groupEnds, groupSlot: this.groupSlots };
  }

  /** A scratch block of at least `length` int32s beside the slots (kept and reused). */
  private scratch(block: HostBlock<Int32Array> | undefined, length: number): HostBlock<Int32Array> {
    if (block && block.length >= length) return block;
    return HostBlock.alloc(this.arena, Math.max(length, 2 * (block?.length ?? 0), 1024), Int32Array);
  }
}

/** The global norm over several row-sparse gradients (for clipping them together). */
export function globalNorm(...grads: RowSparseGrad[]): number {
  let s = 0;
  for (const g of grads) s += g.sumOfSquares();
  return Math.sqrt(s);
}
