// The expert mixture of a PEER layer, one tf.customGrad with a hand-written backward pass:
//   y[t] = sum_{r < R} g[t, r] * sigma(u_{e(t,r)} . x[t]) * v_{e(t,r)}
// where e(t, r) is the r-th retrieved expert of token t (R = h * k, all heads of the token).
//
// T tokens, R = h*k retrieved experts per token, D model width.
//
// Inputs of the customGrad are x [T, D] and the router weights g [T, R]; the u and v rows are not
// tfjs variables: they are copied from the expert tables (held outside tfjs) into the row kernels'
// memory, and the products over them run as wasm SIMD loops (kernels/row-kernels.ts), because
// tfjs-wasm's broadcasting element-wise ops are 10-30x slower on these [T, R, D] arrays. The small
// [T, R] parts (sigma, sigma', products with g) are JS loops (activation.ts).
// Backward returns dx and dg to autodiff and hands the row gradients dU, dV (summed per distinct
// expert, [U, D] for U distinct rows among the T*R) to the tables' row-sparse accumulators as a
// side effect: no dense [N, D] gradient, no autodiff through gathers.
import * as tf from '@tensorflow/tfjs-core';
import { activate, activationDerivative } from './activation.js';
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

/**
 * The row kernels and their memory, one per layer. The u and v rows gathered by a forward pass stay
 * in this memory; the backward pass of that same call reuses them when nothing has overwritten them
 * since (one chunk per batch), and gathers again otherwise (token chunks, several forward passes).
 */
export class MixtureWorkspace {
  readonly kernels: KernelArena;
  private generation = 0;
  private resident: { generation: number; u: Region; v: Region; x: Region } | undefined;

  constructor(options: { forceFallback?: boolean } = {}) {
    this.kernels = new KernelArena(options);
  }

  /** Forgets resident rows (call when the tables change). */
  invalidate(): void {
    this.resident = undefined;
  }

  /** Records the rows of a new forward pass; returns its generation. */
  beginForward(u: Region, v: Region, x: Region): number {
    this.generation++;
    this.resident = { generation: this.generation, u, v, x };
    return this.generation;
  }

  /** The rows of forward pass `generation` if still in memory. */
  residentRows(generation: number): { u: Region; v: Region; x: Region } | undefined {
    return this.resident?.generation === generation ? this.resident : undefined;
  }

  /** Bytes of kernel memory held. */
  get bytes(): number {
    return this.kernels.capacityBytes;
  }

  private slotOf = new Int32Array(0);

  /**
   * Groups the occurrences of `indices` by row: writes `order` (occurrences, grouped by row) and
   * `groupEnd` (one end offset per distinct row) into kernel memory and returns the distinct rows in
   * first-occurrence order. O(n) integer work with a row -> slot map cleared after use.
   */
  groupByRow(indices: Int32Array, tableRows: number): { rows: Int32Array; order: Region; groupEnd: Region } {
    const n = indices.length;
    if (this.slotOf.length < tableRows) this.slotOf = new Int32Array(tableRows);
    const slotOf = this.slotOf;
    const slotOfOccurrence = new Int32Array(n);
    const rows = new Int32Array(n);
    const counts = new Int32Array(n);
    let distinct = 0;
    for (let o = 0; o < n; o++) {
      const row = indices[o]!;
      let s = slotOf[row]!;
      if (s === 0) {
        s = ++distinct;
        slotOf[row] = s;
        rows[s - 1] = row;
      }
      slotOfOccurrence[o] = s - 1;
      counts[s - 1]!++;
    }
    for (let s = 0; s < distinct; s++) slotOf[rows[s]!] = 0;
    const k = this.kernels;
    const order = k.alloc(n);
    const groupEnd = k.alloc(distinct);
    const ends = k.viewInt(groupEnd);
    const next = new Int32Array(distinct);
    let total = 0;
    for (let s = 0; s < distinct; s++) {
      next[s] = total;
      total += counts[s]!;
      ends[s] = total;
    }
    const ord = k.viewInt(order);
    for (let o = 0; o < n; o++) ord[next[slotOfOccurrence[o]!]!++] = o;
    return { rows: rows.subarray(0, distinct), order, groupEnd };
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

  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x2, g2] = args as [tf.Tensor2D, tf.Tensor2D];
    // w_down = w_down_embed(indices); w_up = w_up_embed(indices)
    k.reset();
    const u = k.alloc(rowCount * dim);
    const v = k.alloc(rowCount * dim);
    const xr = k.alloc(tokens * dim);
    const ar = k.alloc(rowCount);
    const wr = k.alloc(rowCount);
    const yr = k.alloc(tokens * dim);
    tables.down.gatherInto(indices, k.view(u));
    tables.up.gatherInto(indices, k.view(v));
    const xValues = x2.dataSync() as Float32Array;
    k.view(xr).set(xValues);
    generation = workspace.beginForward(u, v, xr);
    // a = einsum('btd,bthkd->bthk', x, w_down)
    k.dot(u, xr, ar, tokens, perToken, dim);
    const a = k.view(ar).slice();
    // w = activation(a) * g   (g: softmax(scores) of each head, dropout folded in)
    const gValues = g2.dataSync() as Float32Array;
    const z = new Float32Array(rowCount);
    activate(a, options.activation, z);
    const w = k.view(wr);
    for (let i = 0; i < rowCount; i++) w[i] = gValues[i]! * z[i]!;
    // y = einsum('bthk,bthkd->btd', w, w_up)
    k.wsum(v, wr, yr, tokens, perToken, dim);
    const y = tf.tensor2d(k.view(yr).slice(), [tokens, dim]);
    // The backward pass needs only these [T, R] and [T, D] values, kept as JS arrays.
    return {
      value: y,
      gradFunc: (dy: tf.Tensor) => {
        let rows = workspace.residentRows(generation);
        if (!rows) {
          // Overwritten since this forward pass (a later chunk or call): gather again.
          k.reset();
          rows = { u: k.alloc(rowCount * dim), v: k.alloc(rowCount * dim), x: k.alloc(tokens * dim) };
          tables.down.gatherInto(indices, k.view(rows.u));
          tables.up.gatherInto(indices, k.view(rows.v));
          k.view(rows.x).set(xValues);
        }
        // The row buffers are about to hold gradients.
        workspace.invalidate();
        const dyr = k.alloc(tokens * dim);
        const sr = k.alloc(rowCount);
        const dar = k.alloc(rowCount);
        const wbr = k.alloc(rowCount);
        const dxr = k.alloc(tokens * dim);
        k.view(dyr).set(dy.dataSync());
        // s[t, r] = v_e . dy[t]  (= dy / dw)
        k.dot(rows.v, dyr, sr, tokens, perToken, dim);
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
        k.wsum(rows.u, dar, dxr, tokens, perToken, dim);
        const dx = tf.tensor2d(k.view(dxr).slice(), [tokens, dim]);
        // Row gradients summed per distinct expert e, written over the rows they replace:
        //   dU_e = sum_{(t,r) -> e} da[t, r] x[t],   dV_e = sum_{(t,r) -> e} w[t, r] dy[t]
        const groups = workspace.groupByRow(indices, tables.down.rows);
        const distinct = groups.rows.length;
        const du = { offset: rows.u.offset, length: distinct * dim };
        const dv = { offset: rows.v.offset, length: distinct * dim };
        k.groupSum(groups.order, groups.groupEnd, dar, rows.x, du, distinct, perToken, dim);
        tables.downGrad.accumulate(groups.rows, k.view(du));
        k.groupSum(groups.order, groups.groupEnd, wbr, dyr, dv, distinct, perToken, dim);
        tables.upGrad.accumulate(groups.rows, k.view(dv));
        return [dx, tf.tensor2d(dg, [tokens, perToken])];
      },
    };
  });
  return mixture(x, g) as tf.Tensor2D;
}
