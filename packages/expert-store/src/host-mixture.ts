// The gather-mixture primitives of a host table (HostExpertTable's rowDots, weightedRowSum,
// accumulateRowGradients, rowDotsAndGradients), run inside the table's own arena: the SIMD row
// kernels read the rows where they are, only x / dy / weights [T, *] are copied in, and the
// group-sum kernel writes each distinct row's gradient straight into its RowSparseGrad slot. A small
// table is read in place (a slot is a table row: it stays in the caches), and the passes that can
// walk the occurrences grouped by row do, reading each distinct row once (the grouped passes,
// expert-store README); weightedRowSum stays in token order. A table far larger than the caches is
// read once per selection, into a gathered copy of the selection's rows in the same arena, which the
// forward and the backward pass then read in order: random reads of a large table cost far more than
// one copy, and a selection is read twice (forward and backward) per table. Tables without an arena
// (plain backing, half storage), widths not a multiple of 8 and hosts without wasm SIMD run JS loops
// of the same semantics (half rows widened to float32 first).
//
// Axes: T tokens, R rows per token, L = T * R occurrences, U distinct rows, D row width.
import * as tf from '@tensorflow/tfjs-core';
import { engineHeap, kernelsOnHeap, passParts, readFloats, runCalls, splitRange, type Arena, type KernelModule } from '@peer/backend/wasm';
import type { RowSelection } from './expert-table.js';
import { HostBlock } from './host-block.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { rowBits, sortByRow } from './row-sort.js';
import { buildDot, buildGroupPass, buildWsum, WSUM_ROWS_IN_FLIGHT } from './wasm/row-kernels.js';

/** Arena space reserved for the mixture's scratch (address space; pages cost nothing until used). */
export const MIXTURE_SCRATCH_BYTES = 8 << 20;
/** Tables from this size on are read through a gathered copy per selection (see the header). */
export const GATHERED_READ_MIN_TABLE_BYTES = 64 << 20;

/** The grouped passes (row-kernels.ts, buildGroupPass): one signature, each reading what it needs. */
type GroupPass = 'group_sum_into' | 'group_dot' | 'group_dot_sum_into';
type GroupPassKernel = (order: number, groupEnd: number, groupSlot: number, c: number, x: number, values: number, scratch: number, u: number, r: number, d: number, start: number, slots: number, rows: number, out: number) => void;

type MixtureKernelExports = {
  dot(rows: number, slot: number, x: number, out: number, t: number, r: number, d: number): void;
  wsum(rows: number, slot: number, w: number, y: number, t: number, r: number, d: number): void;
  wsum_in_order(rows: number, slot: number, w: number, y: number, t: number, r: number, d: number): void;
} & Record<GroupPass, GroupPassKernel>;

const MIXTURE_MODULE: KernelModule = {
  key: 'expert-store/mixture',
  functions: () => [
    { name: 'dot', builder: buildDot() },
    { name: 'wsum', builder: buildWsum(WSUM_ROWS_IN_FLIGHT) },
    { name: 'wsum_in_order', builder: buildWsum(1) },
    { name: 'group_sum_into', builder: buildGroupPass({ dots: false, sums: true }) },
    { name: 'group_dot', builder: buildGroupPass({ dots: true, sums: false }) },
    { name: 'group_dot_sum_into', builder: buildGroupPass({ dots: true, sums: true }) },
  ],
};
/** The fewest tokens (or distinct rows) in a part of a pass split over threads: a part costs a few µs to hand out. */
export const MIN_ITEMS_PER_PART = 16;

class HostSelection implements RowSelection {
  constructor(
    readonly owner: HostMixture,
    readonly indices: Int32Array,
    readonly tokens: number,
    readonly perToken: number,
  ) {}
}

type Scratch = 'x' | 'small' | 'out' | 'row' | 'gathered';
type IntScratch = 'slot' | 'order' | 'ends';

/**
 * Where the row kernels find a selection's rows: a row block and the slot of each occurrence in it;
 * `inPlace` when the block is the table itself (else a gathered copy, one row per occurrence).
 */
interface RowSource {
  rowsAt: number;
  slotAt: number;
  inPlace: boolean;
}

/** Offsets of a grouping of a selection's occurrences in the arena (see buildGroupPass). */
interface GroupsAt {
  groups: number;
  orderAt: number;
  groupEndAt: number;
  /** groupEnd's live view (where each part of a split pass starts). */
  ends: Int32Array;
}

export class HostMixture {
  private readonly kernels: MixtureKernelExports | undefined;
  private readonly scratch = new Map<Scratch, HostBlock<Float32Array>>();
  private readonly intScratch = new Map<IntScratch, HostBlock<Int32Array>>();
  /** 0, 1, 2, ...: the slots of a gathered copy, whose row o is occurrence o. */
  private sequence: HostBlock<Int32Array> | undefined;
  /** The selection whose rows the 'gathered' block holds. */
  private gatheredFor: { selection: HostSelection; source: RowSource } | undefined;

  constructor(
    private readonly tableRows: number,
    private readonly dim: number,
    private readonly arena: Arena | undefined,
    /** The float32 rows, or undefined for half storage (read through `gatherRows`). */
    private readonly rows: () => HostBlock<Float32Array> | undefined,
    private readonly gatherRows: (indices: Int32Array, out: Float32Array) => Float32Array,
    /** The arena's row-gather kernel (count, indices, rows, out, row bytes), when it has one. */
    private readonly gatherKernel?: (count: number, indicesAt: number, rowsAt: number, outAt: number, rowBytes: number) => void,
  ) {
    this.kernels =
      arena && dim % 8 === 0
        ? (kernelsOnHeap<MixtureKernelExports>(arena.memory, MIXTURE_MODULE.key, MIXTURE_MODULE.functions) ?? undefined)
        : undefined;
  }

  /** How many parts a pass over `count` items (tokens, or distinct rows) is split into (1: one call here). */
  private parts(count: number): number {
    return passParts(this.arena!.memory, count, MIN_ITEMS_PER_PART);
  }

  /**
   * Runs kernel `fn` over `count` items split into `parts` contiguous parts (one call here, or claimed
   * by the kernel pool's threads); `args(start, end, part)` are the arguments of the part [start, end).
   */
  private runSplit(fn: keyof MixtureKernelExports, count: number, args: (start: number, end: number, part: number) => number[], parts = this.parts(count)): void {
    runCalls(this.arena!.memory, MIXTURE_MODULE, fn, splitRange(count, parts).map(([a, b], p) => args(a, b, p)));
  }

  /** Whether the SIMD row kernels run (else the JS loops). */
  get simd(): boolean {
    return this.kernels !== undefined;
  }

  select(indices: Int32Array, perToken: number, name: string): RowSelection {
    if (!(indices instanceof Int32Array)) throw new Error(`ExpertTable '${name}'.select: indices must be an Int32Array`);
    if (!(Number.isSafeInteger(perToken) && perToken > 0) || indices.length % perToken !== 0) {
      throw new Error(`ExpertTable '${name}'.select: ${indices.length} indices are not tokens x ${perToken} rows`);
    }
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      if (!(i >= 0 && i < this.tableRows)) throw new Error(`ExpertTable '${name}'.select: indices[${k}] = ${i} is out of range [0, ${this.tableRows})`);
    }
    return new HostSelection(this, indices, indices.length / perToken, perToken);
  }

  private own(selection: RowSelection): HostSelection {
    if (!(selection instanceof HostSelection) || selection.owner !== this) throw new Error('ExpertTable: a RowSelection is used with a table other than the one that made it');
    return selection;
  }

  /** A float32 scratch block of `length` in the arena (kept, grown by doubling), or undefined. */
  private block(kind: Scratch, length: number): HostBlock<Float32Array> | undefined {
    const have = this.scratch.get(kind);
    if (have && have.length >= length) return have;
    const block = HostBlock.allocInArena(this.arena!, Math.max(length, 2 * (have?.length ?? 0)), Float32Array);
    if (block) this.scratch.set(kind, block);
    return block;
  }

  /**
   * The rows the JS loops read and the slot of each occurrence in them: the table's float32 rows and
   * the selection itself, or for half storage the occurrences' rows widened ([T * R, D]) and 0, 1, ...
   */
  private jsRows(sel: HostSelection): [Float32Array, Int32Array] {
    const rows = this.rows();
    if (rows) return [rows.array, sel.indices];
    const n = sel.indices.length;
    return [this.gatherRows(sel.indices, new Float32Array(n * this.dim)), Int32Array.from({ length: n }, (_, o) => o)];
  }

  /** `values` into the arena's int32 block `kind` (kept, grown by doubling); its offset, or undefined. */
  private copyInts(kind: IntScratch, values: Int32Array): number | undefined {
    const n = values.length;
    let block = this.intScratch.get(kind);
    if (!block || block.length < n) {
      block = HostBlock.allocInArena(this.arena!, Math.max(n, 2 * (block?.length ?? 0)), Int32Array);
      if (!block) return undefined;
      this.intScratch.set(kind, block);
    }
    block.array.set(values);
    return block.offsetIn(this.arena);
  }

  /** Copies the selection's rows into the arena's slot block; its offset, or undefined. */
  private slotOffset(sel: HostSelection): number | undefined {
    return this.copyInts('slot', sel.indices);
  }

  /**
   * The selection's occurrences grouped by row, in the arena: the step's one sort and its group ends
   * (row-sort.ts; the row gradients' grouping asks for the same indices later and gets them again).
   */
  private groupsOf(sel: HostSelection): GroupsAt | undefined {
    const { perm, ends } = sortByRow(sel.indices, rowBits(this.tableRows));
    const orderAt = this.copyInts('order', perm);
    const groupEndAt = orderAt === undefined ? undefined : this.copyInts('ends', ends);
    if (orderAt === undefined || groupEndAt === undefined) return undefined;
    return { groups: ends.length, orderAt, groupEndAt, ends: this.intScratch.get('ends')!.array };
  }

  /**
   * Runs grouped pass `fn` over `groups`, split into parts of whole groups: `args(part)` gives the
   * arguments before the group count (order, groupEnd, groupSlot, c, x, values, scratch) and `tail`
   * those after `start` (slots, rows, out).
   */
  private runGroups(fn: GroupPass, groups: GroupsAt, perToken: number, args: (g0: number, part: number) => number[], tail: number[], parts = this.parts(groups.groups)): void {
    const ends = groups.ends;
    this.runSplit(fn, groups.groups, (g0, g1, part) => [...args(g0, part), g1 - g0, perToken, this.dim, g0 === 0 ? 0 : ends[g0 - 1]!, ...tail], parts);
  }

  /**
   * Where the kernels read the selection's rows: in place for a small table; for a large one a
   * gathered copy, made by the first call on the selection and kept until another selection needs
   * it (the backward pass of the same selection reads it again). Undefined when the arena has no room.
   */
  private rowSource(sel: HostSelection): RowSource | undefined {
    const rows = this.rows();
    const rowsAt = rows?.offsetIn(this.arena);
    if (!rows || rowsAt === undefined) return undefined;
    const n = sel.indices.length;
    const d = this.dim;
    if (!this.gatherKernel || rows.length * 4 < GATHERED_READ_MIN_TABLE_BYTES) {
      const slotAt = this.slotOffset(sel);
      return slotAt === undefined ? undefined : { rowsAt, slotAt, inPlace: true };
    }
    if (this.gatheredFor?.selection === sel) return this.gatheredFor.source;
    this.gatheredFor = undefined;
    const gathered = this.block('gathered', n * d);
    let sequence = this.sequence;
    if (gathered && (!sequence || sequence.length < n)) {
      sequence = HostBlock.allocInArena(this.arena!, Math.max(n, 2 * (sequence?.length ?? 0)), Int32Array);
      if (sequence) {
        const s = sequence.array;
        for (let o = 0; o < s.length; o++) s[o] = o;
        this.sequence = sequence;
      }
    }
    const indicesAt = gathered && sequence ? this.slotOffset(sel) : undefined;
    if (!gathered || !sequence || indicesAt === undefined) {
      const slotAt = indicesAt ?? this.slotOffset(sel);
      return slotAt === undefined ? undefined : { rowsAt: this.rows()!.offsetIn(this.arena)!, slotAt, inPlace: true };
    }
    // Offsets again: the allocations above may have grown the memory (offsets stay, views do not).
    const source = { rowsAt: gathered.offsetIn(this.arena)!, slotAt: sequence.offsetIn(this.arena)!, inPlace: false };
    this.gatherKernel(n, indicesAt, this.rows()!.offsetIn(this.arena)!, source.rowsAt, d * 4);
    this.gatheredFor = { selection: sel, source };
    return source;
  }

  /** Forgets the gathered copy (call when the table's rows change). */
  rowsChanged(): void {
    this.gatheredFor = undefined;
  }

  /** `values` into the arena block `kind`; its offset, or undefined when there is no room. */
  private copyIn(kind: Scratch, values: Float32Array): number | undefined {
    const block = this.block(kind, values.length);
    if (!block) return undefined;
    block.array.set(values);
    return block.offsetIn(this.arena);
  }

  rowDots(selection: RowSelection, x: tf.Tensor2D): tf.Tensor2D {
    const sel = this.own(selection);
    const { tokens: t, perToken: r } = sel;
    const d = this.dim;
    checkShape('rowDots', x, t, d);
    const n = t * r;
    if (this.kernels) {
      const out = this.block('out', n);
      const source = out && this.rowSource(sel);
      const xAt = source ? this.copyIn('x', readFloats(x)) : undefined;
      // A table read in place is read in row order, each row once (the occurrences grouped by row).
      const groups = source?.inPlace ? this.groupsOf(sel) : undefined;
      if (out && source && xAt !== undefined && groups) {
        this.runGroups('group_dot', groups, r, (g0) => [groups.orderAt, groups.groupEndAt + g0 * 4, 0, 0, xAt, 0, 0], [source.slotAt, source.rowsAt, out.offsetIn(this.arena)!]);
        return toTensor(out.array.subarray(0, n), [t, r]);
      }
      if (out && source && xAt !== undefined) {
        const outAt = out.offsetIn(this.arena)!;
        // Tokens split over threads: each writes its own out[t0:t1, :].
        this.runSplit('dot', t, (t0, t1) => [source.rowsAt, source.slotAt + t0 * r * 4, xAt + t0 * d * 4, outAt + t0 * r * 4, t1 - t0, r, d]);
        return toTensor(out.array.subarray(0, n), [t, r]);
      }
    }
    const [rv, sv] = this.jsRows(sel);
    const xv = readFloats(x).slice();
    const ov = new Float32Array(n);
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = sv[ti * r + ri]! * d;
        let acc = 0;
        for (let j = 0; j < d; j++) acc += rv[o + j]! * xv[ti * d + j]!;
        ov[ti * r + ri] = acc;
      }
    }
    return toTensor(ov, [t, r]);
  }

  weightedRowSum(selection: RowSelection, weights: tf.Tensor2D): tf.Tensor2D {
    const sel = this.own(selection);
    const { tokens: t, perToken: r } = sel;
    const d = this.dim;
    checkShape('weightedRowSum', weights, t, r);
    if (this.kernels) {
      const y = this.block('out', t * d);
      const source = y && this.rowSource(sel);
      const wAt = source ? this.copyIn('small', readFloats(weights)) : undefined;
      if (y && source && wAt !== undefined) {
        const yAt = y.offsetIn(this.arena)!;
        this.runSplit(source.inPlace ? 'wsum' : 'wsum_in_order', t, (t0, t1) => [source.rowsAt, source.slotAt + t0 * r * 4, wAt + t0 * r * 4, yAt + t0 * d * 4, t1 - t0, r, d]);
        return toTensor(y.array.subarray(0, t * d), [t, d]);
      }
    }
    const [rv, sv] = this.jsRows(sel);
    const wv = readFloats(weights).slice();
    const yv = new Float32Array(t * d);
    for (let ti = 0; ti < t; ti++) {
      for (let ri = 0; ri < r; ri++) {
        const o = sv[ti * r + ri]! * d;
        const s = wv[ti * r + ri]!;
        for (let j = 0; j < d; j++) yv[ti * d + j]! += s * rv[o + j]!;
      }
    }
    return toTensor(yv, [t, d]);
  }

  accumulateRowGradients(selection: RowSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowSparseGrad): void {
    this.groupSums(this.own(selection), weights, x, into, false);
  }

  /**
   * rowDots(selection, x) and accumulateRowGradients(selection, weights, x, into), the same numbers:
   * one pass over the rows of a table read in place (a backward pass needs both with the same x).
   */
  rowDotsAndGradients(selection: RowSelection, x: tf.Tensor2D, weights: tf.Tensor2D, into: RowSparseGrad): tf.Tensor2D {
    const sel = this.own(selection);
    return this.groupSums(sel, weights, x, into, true) ?? this.rowDots(sel, x);
  }

  /**
   * The row gradients' group sums; with `withDots` also the selection's row dots with x, when one
   * grouped pass gives both (returned; else undefined, and the caller runs rowDots).
   */
  private groupSums(sel: HostSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowSparseGrad, withDots: boolean): tf.Tensor2D | undefined {
    const { tokens: t, perToken: r } = sel;
    const d = this.dim;
    checkShape('accumulateRowGradients', weights, t, r);
    checkShape('accumulateRowGradients', x, t, d);
    const groups = into.groupOccurrences(sel.indices);
    const u = groups.groups;
    if (this.kernels) {
      const arena = this.arena;
      const source = withDots ? this.rowSource(sel) : undefined;
      const out = source?.inPlace ? this.block('out', t * r) : undefined;
      const at = [groups.order.offsetIn(arena), groups.groupEnd.offsetIn(arena), groups.groupSlot.offsetIn(arena), into.valuesBlock().offsetIn(arena)];
      // One scratch row per part: distinct rows are split into parts, each its own slot.
      const parts = this.parts(u);
      const row = this.block('row', d * parts);
      const cAt = row ? this.copyIn('small', readFloats(weights)) : undefined;
      const xAt = cAt !== undefined ? this.copyIn('x', readFloats(x)) : undefined;
      // Views again below: the copies may have grown the memory.
      if (row && cAt !== undefined && xAt !== undefined && at.every((a) => a !== undefined)) {
        const [order, groupEnd, groupSlot, values] = at as number[];
        const rowAt = row.offsetIn(arena)!;
        const groupsAt: GroupsAt = { groups: u, orderAt: order!, groupEndAt: groupEnd!, ends: groups.groupEnd.array };
        const args = (g0: number, part: number) => [order!, groupEnd! + g0 * 4, groupSlot! + g0 * 4, cAt, xAt, values!, rowAt + part * d * 4];
        if (source && out) {
          this.runGroups('group_dot_sum_into', groupsAt, r, args, [source.slotAt, source.rowsAt, out.offsetIn(arena)!], parts);
          return toTensor(out.array.subarray(0, t * r), [t, r]);
        }
        this.runGroups('group_sum_into', groupsAt, r, args, [0, 0, 0], parts);
        return undefined;
      }
    }
    const cv = readFloats(weights).slice();
    const xv = readFloats(x).slice();
    const ord = groups.order.array;
    const ends = groups.groupEnd.array;
    const slots = groups.groupSlot.array;
    const values = into.valuesBlock().array;
    const acc = new Float32Array(d);
    let i = 0;
    for (let g = 0; g < u; g++) {
      acc.fill(0);
      for (; i < ends[g]!; i++) {
        const o = ord[i]!;
        const s = cv[o]!;
        const src = Math.floor(o / r) * d;
        for (let j = 0; j < d; j++) acc[j]! += s * xv[src + j]!;
      }
      const slot = slots[g]!;
      if (slot >= 0) values.set(acc, slot * d);
      else {
        const dst = ~slot * d;
        for (let j = 0; j < d; j++) values[dst + j]! += acc[j]!;
      }
    }
    return undefined;
  }
}

function checkShape(where: string, x: tf.Tensor, rows: number, cols: number): void {
  if (x.rank !== 2 || x.shape[0] !== rows || x.shape[1] !== cols || x.dtype !== 'float32') {
    throw new Error(`ExpertTable.${where}: expected a float32 tensor [${rows}, ${cols}], got ${x.dtype} [${x.shape.join(', ')}]`);
  }
}

/** A new tensor holding `values`: written straight into the engine's heap on wasm. */
function toTensor<R extends tf.Rank.R2>(values: Float32Array, shape: [number, number]): tf.Tensor<R> {
  const heap = engineHeap();
  if (heap) {
    const out = heap.output(shape, 'float32');
    heap.floats(out).set(values);
    return out as tf.Tensor<R>;
  }
  return tf.tensor2d(values.slice(), shape) as tf.Tensor<R>;
}
