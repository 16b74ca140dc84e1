// The expert mixture of a PEER layer, one tf.customGrad with a hand-written backward pass:
//   y[t] = sum_{r < R} g[t, r] * sigma(u_{e(t,r)} . x[t]) * v_{e(t,r)}
// where e(t, r) is the r-th retrieved expert of token t (R = h * k, all heads of the token).
//
// T tokens, R = h*k retrieved experts per token, D model width.
//
// Inputs of the customGrad are x [T, D] and the router weights g [T, R]; the u and v rows are not
// tfjs variables: the distinct ones are copied (once each) from the expert tables (held outside
// tfjs) into the row kernels' memory, and the products over them run as wasm SIMD loops
// (kernels/row-kernels.ts), because tfjs-wasm's broadcasting element-wise ops are 5-10x slower on
// these [T, R, D] arrays. The small [T, R] parts (sigma, sigma', products with g) are JS loops
// (activation.ts): tfjs's erf ops on wasm cost 20 ms per 512-token step.
// Backward returns dx and dg to autodiff and hands the row gradients dU, dV (summed per distinct
// expert, [U, D] for U distinct rows among the T*R) to the tables' row-sparse accumulators as a
// side effect: no dense [N, D] gradient, no autodiff through gathers.
import * as tf from '@tensorflow/tfjs-core';
import { activateArray as activate, activationDerivativeArray as activationDerivative } from '@peer/backend';
import type { ExpertActivation } from './config.js';
import { KernelArena, type Region } from './kernels/kernel-arena.js';

/** Expert rows held outside tfjs, [rows, dim] (an `ExpertTable`). */
export interface ExpertRows {
  readonly rows: number;
  readonly dim: number;
  /** Copies rows `indices` into `out` ([indices.length * dim]); throws on an index out of range. */
  gatherInto(indices: Int32Array, out: Float32Array): Float32Array;
}

/** Sums row gradients by index (a `RowSparseGrad`). `rowGrads` is only valid during the call. */
export interface RowGradientSink {
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
}

export interface MixtureTables {
  /** u rows (the "down" table). */
  down: ExpertRows;
  /** v rows (the "up" table). */
  up: ExpertRows;
  downGrad: RowGradientSink;
  upGrad: RowGradientSink;
}

/** The distinct rows of one call and where each occurrence finds its row, in kernel memory. */
export interface RowGroups {
  /** The distinct table rows in first-occurrence order [U]: the layout of the gathered rows. */
  rows: Int32Array;
  /** slot[o]: which gathered row occurrence o uses (int32 [n]). */
  slot: Region;
  /** The distinct table rows ascending [U]: the order of the row gradients. */
  sortedRows: Int32Array;
  /** The occurrences grouped by distinct row, groups in `sortedRows` order (int32 [n]). */
  order: Region;
  /** End offset into `order` of each group (int32 [U]). */
  groupEnd: Region;
}

interface ResidentRows {
  generation: number;
  groups: RowGroups;
  u: Region;
  v: Region;
  x: Region;
}

/**
 * The row kernels and their memory, one per layer. The distinct u and v rows gathered by a forward
 * pass stay in this memory; the backward pass of that same call reuses them when nothing has
 * overwritten them since (one chunk per batch), and gathers again otherwise (token chunks, several
 * forward passes in one tape).
 */
export class MixtureWorkspace {
  readonly kernels: KernelArena;
  private generation = 0;
  private resident: ResidentRows | undefined;
  /** slotOf[row] = distinct slot + 1 while grouping; all zero between calls. */
  private slotOf = new Int32Array(0);
  private counts = new Int32Array(0);

  constructor(options: { forceFallback?: boolean } = {}) {
    this.kernels = new KernelArena(options);
  }

  /** Forgets resident rows (call when the tables change). */
  invalidate(): void {
    this.resident = undefined;
  }

  /** Records the rows of a new forward pass; returns its generation. */
  beginForward(rows: Omit<ResidentRows, 'generation'>): number {
    this.generation++;
    this.resident = { generation: this.generation, ...rows };
    return this.generation;
  }

  /** The rows of forward pass `generation` if still in memory. */
  residentRows(generation: number): ResidentRows | undefined {
    return this.resident?.generation === generation ? this.resident : undefined;
  }

  /** Bytes of kernel memory held. */
  get bytes(): number {
    return this.kernels.capacityBytes;
  }

  /**
   * Groups the occurrences of `indices` by table row, allocating `slot`, `order` and `groupEnd` in
   * kernel memory. O(n) integer work (and a sort of the U distinct rows) with a row -> slot map that
   * is cleared again after use.
   *
   * Two orders on purpose: the gathered rows are laid out in first-occurrence order, so that the
   * row kernels read them nearly sequentially token after token; the row gradients come out in
   * ascending row order, so that the accumulation and the sparse optimizer walk the tables forward
   * (measured at N = 1M, per table and step: accumulate 17 -> 13 ms, Adam 145 -> 135 ms). Laying
   * the gathered rows out ascending instead made the row kernels' reads random and cost more.
   */
  groupByRow(indices: Int32Array, tableRows: number): RowGroups {
    const n = indices.length;
    if (this.slotOf.length < tableRows) this.slotOf = new Int32Array(tableRows);
    if (this.counts.length < n) this.counts = new Int32Array(n);
    const k = this.kernels;
    const slot = k.alloc(n);
    const order = k.alloc(n);
    const slotOf = this.slotOf;
    const counts = this.counts;
    const slots = k.viewInt(slot);
    const firstSeen = new Int32Array(n);
    let distinct = 0;
    for (let o = 0; o < n; o++) {
      const row = indices[o]!;
      let s = slotOf[row]!;
      if (s === 0) {
        s = ++distinct;
        slotOf[row] = s;
        firstSeen[s - 1] = row;
      }
      slots[o] = s - 1;
    }
    const rows = firstSeen.slice(0, distinct);
    const sortedRows = rows.slice().sort();
    // Now group number (ascending rank) + 1 per row; count each group's occurrences.
    for (let g = 0; g < distinct; g++) {
      slotOf[sortedRows[g]!] = g + 1;
      counts[g] = 0;
    }
    for (let o = 0; o < n; o++) counts[slotOf[indices[o]!]! - 1]!++;
    const groupEnd = k.alloc(distinct);
    // Views again: the allocation may have grown (and detached) the memory.
    const ends = k.viewInt(groupEnd);
    const ord = k.viewInt(order);
    // counts become each group's next write position.
    let total = 0;
    for (let g = 0; g < distinct; g++) {
      const c = counts[g]!;
      counts[g] = total;
      total += c;
      ends[g] = total;
    }
    for (let o = 0; o < n; o++) ord[counts[slotOf[indices[o]!]! - 1]!++] = o;
    for (let g = 0; g < distinct; g++) slotOf[sortedRows[g]!] = 0;
    return { rows, slot, sortedRows, order, groupEnd };
  }
}

export interface MixtureOptions {
  activation: ExpertActivation;
}

/**
 * y [T, D] from x [T, D], router weights g [T, R] and the expert rows `indices` (T*R, row-major
 * [T, R]). Differentiable in x and g; backward accumulates the u and v row gradients into
 * `tables.downGrad` / `tables.upGrad`.
 */
export function expertMixture(
  x: tf.Tensor2D,
  g: tf.Tensor2D,
  indices: Int32Array,
  tables: MixtureTables,
  workspace: MixtureWorkspace,
  options: MixtureOptions,
): tf.Tensor2D {
  const [tokens, dim] = x.shape;
  const perToken = g.shape[1];
  if (g.shape[0] !== tokens) throw new Error(`expertMixture: g has ${g.shape[0]} tokens, x has ${tokens}`);
  if (indices.length !== tokens * perToken) {
    throw new Error(`expertMixture: ${indices.length} expert rows for ${tokens} tokens x ${perToken} experts`);
  }
  if (tables.down.dim !== dim || tables.up.dim !== dim) {
    throw new Error(`expertMixture: tables of width ${tables.down.dim} / ${tables.up.dim} for x of width ${dim}`);
  }
  const k = workspace.kernels;
  const rowCount = tokens * perToken;
  let generation = 0;

  // Groups, then the distinct u and v rows: w_down = w_down_embed(indices); w_up = w_up_embed(indices)
  const gatherRows = (xValues: Float32Array): Omit<ResidentRows, 'generation'> => {
    k.reset();
    const groups = workspace.groupByRow(indices, tables.down.rows);
    const distinct = groups.rows.length;
    const u = k.alloc(distinct * dim);
    const v = k.alloc(distinct * dim);
    const xr = k.alloc(tokens * dim);
    tables.down.gatherInto(groups.rows, k.view(u));
    tables.up.gatherInto(groups.rows, k.view(v));
    k.view(xr).set(xValues);
    return { groups, u, v, x: xr };
  };

  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x2, g2] = args as [tf.Tensor2D, tf.Tensor2D];
    const xValues = x2.dataSync() as Float32Array;
    const rows = gatherRows(xValues);
    generation = workspace.beginForward(rows);
    const ar = k.alloc(rowCount);
    const wr = k.alloc(rowCount);
    const yr = k.alloc(tokens * dim);
    // a = einsum('btd,bthkd->bthk', x, w_down)
    k.dot(rows.u, rows.groups.slot, rows.x, ar, tokens, perToken, dim);
    const a = k.view(ar).slice();
    // w = activation(a) * g   (g: softmax(scores) of each head, dropout folded in)
    const gValues = g2.dataSync() as Float32Array;
    const z = new Float32Array(rowCount);
    activate(a, options.activation, z);
    const w = k.view(wr);
    for (let i = 0; i < rowCount; i++) w[i] = gValues[i]! * z[i]!;
    // y = einsum('bthk,bthkd->btd', w, w_up)
    k.wsum(rows.v, rows.groups.slot, wr, yr, tokens, perToken, dim);
    const y = tf.tensor2d(k.view(yr).slice(), [tokens, dim]);
    // The backward pass needs only these [T, R] and [T, D] values, kept as JS arrays.
    return {
      value: y,
      gradFunc: (dy: tf.Tensor) => {
        // Gathered again if a later forward pass (a later chunk or call) overwrote them.
        const resident = workspace.residentRows(generation) ?? gatherRows(xValues);
        const { groups, u, v } = resident;
        // The row buffers are about to hold gradients.
        workspace.invalidate();
        const dyr = k.alloc(tokens * dim);
        const sr = k.alloc(rowCount);
        const dar = k.alloc(rowCount);
        const wbr = k.alloc(rowCount);
        const dxr = k.alloc(tokens * dim);
        k.view(dyr).set(dy.dataSync());
        // s[t, r] = v_e . dy[t]  (= dy / dw)
        k.dot(v, groups.slot, dyr, sr, tokens, perToken, dim);
        // dg = sigma(a) s;  da = g s sigma'(a);  w = g sigma(a)
        const s = k.view(sr);
        const da = k.view(dar);
        const wb = k.view(wbr);
        const dg = new Float32Array(rowCount);
        activationDerivative(a, options.activation, da);
        for (let i = 0; i < rowCount; i++) {
          dg[i] = z[i]! * s[i]!;
          da[i] = gValues[i]! * s[i]! * da[i]!;
          wb[i] = gValues[i]! * z[i]!;
        }
        // dx[t] = sum_r da[t, r] u_e
        k.wsum(u, groups.slot, dar, dxr, tokens, perToken, dim);
        const dx = tf.tensor2d(k.view(dxr).slice(), [tokens, dim]);
        // Row gradients per distinct expert e (ascending e), written over the rows they replace:
        //   dU_e = sum_{(t,r) -> e} da[t, r] x[t],   dV_e = sum_{(t,r) -> e} w[t, r] dy[t]
        const distinct = groups.rows.length;
        k.groupSum(groups.order, groups.groupEnd, dar, resident.x, u, distinct, perToken, dim);
        tables.downGrad.accumulate(groups.sortedRows, k.view(u));
        k.groupSum(groups.order, groups.groupEnd, wbr, dyr, v, distinct, perToken, dim);
        tables.upGrad.accumulate(groups.sortedRows, k.view(v));
        return [dx, tf.tensor2d(dg, [tokens, perToken])];
      },
    };
  });
  return mixture(x, g) as tf.Tensor2D;
}
