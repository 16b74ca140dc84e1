// The row-sparse gradient of a device table. A mixture's backward only records its occurrences
// (row indices, weights, x: tensors it keeps, nothing read back); they are summed per distinct row
// when the sum is needed (an optimizer step, scale, sumOfSquaresTensor), all on the device:
//   1. sort the occurrences by row (tf.topk of the negated row ids: exact below 2^24 rows),
//   2. mark the first occurrence of each row, number the marks (cumulative sum): the slots,
//   3. one program sums each slot's occurrences, in order, into [U, D].
// U (distinct rows) is not known on the host, so the slot arrays have the static size min(L, N),
// unused slots holding row -1 and a zero gradient. No [N, D] buffer exists.
//
// Axes: N table rows, D row width, T tokens, R rows per token, L occurrences, U slots.
import * as tf from '@tensorflow/tfjs-core';
import type { RowGradient } from './expert-table.js';
import { groupHeadsProgram, groupSumProgram, slotRowsProgram } from './device-programs.js';

/** Occurrences recorded by one call: row `indices[o]` gets `weights[o] * x[floor(o / perToken)]`. */
interface Occurrences {
  indices: tf.Tensor1D;
  weights: tf.Tensor1D;
  x: tf.Tensor2D;
  perToken: number;
}

/** The summed gradient: `slotRows` [U] (-1: unused) and `grads` [U, D]. */
export interface SummedRows {
  slotRows: tf.Tensor1D;
  grads: tf.Tensor2D;
}

/** 2^24: integers up to here are exact in float32 (tf.topk and tf.cumsum sort and count in float32). */
const EXACT_FLOAT_INTS = 2 ** 24;

const DEVICE_SYNC_HINT = 'on a device table it would need a synchronous read (use sumOfSquaresTensor(), or read it with await data())';

export class DeviceRowGradient implements RowGradient {
  readonly rows: number;
  readonly dim: number;
  private pending: Occurrences[] = [];
  private summed: SummedRows | undefined;

  constructor(table: { readonly rows: number; readonly dim: number }) {
    if (table.rows >= EXACT_FLOAT_INTS) throw new Error(`DeviceRowGradient: a table of ${table.rows} rows is too large; row ids are sorted as float32, exact below ${EXACT_FLOAT_INTS}`);
    this.rows = table.rows;
    this.dim = table.dim;
  }

  /** Not available on the device (U lives there); throws. */
  get size(): number {
    throw new Error(`DeviceRowGradient.size: ${DEVICE_SYNC_HINT}`);
  }

  /**
   * Records `weights[o] * x[floor(o / perToken)]` for row `indices[o]` (internal: the device table's
   * accumulateRowGradients). Keeps its own references to the tensors.
   */
  record(indices: tf.Tensor, weights: tf.Tensor, x: tf.Tensor2D, perToken: number): void {
    const l = indices.size;
    if (weights.size !== l) throw new Error(`DeviceRowGradient: weights have ${weights.size} elements, expected ${l} (one per occurrence)`);
    if (x.shape[1] !== this.dim || x.shape[0] * perToken !== l) {
      throw new Error(`DeviceRowGradient: x is [${x.shape}], expected [${l / perToken}, ${this.dim}]`);
    }
    if (l === 0) return;
    const [kept, w, xs] = tf.tidy(() => [tf.reshape(indices, [l]), tf.reshape(weights, [l]), tf.clone(x)]);
    // Kept: a caller's tidy must not dispose what this gradient holds until it is summed.
    this.pending.push({ indices: tf.keep(kept!) as tf.Tensor1D, weights: tf.keep(w!) as tf.Tensor1D, x: tf.keep(xs!) as tf.Tensor2D, perToken });
  }

  /** Adds `rowGrads` ([L * D]) to rows `indices` ([L]) (uploads them; a row listed several times gets the sum). */
  accumulate(indices: Int32Array, rowGrads: Float32Array): void {
    const l = indices.length;
    if (rowGrads.length !== l * this.dim) throw new Error(`DeviceRowGradient.accumulate: rowGrads has length ${rowGrads.length}, expected ${l} indices x ${this.dim} = ${l * this.dim}`);
    for (let k = 0; k < l; k++) {
      const row = indices[k]!;
      if (!(row >= 0 && row < this.rows)) throw new Error(`DeviceRowGradient.accumulate: indices[${k}] = ${row} is out of range [0, ${this.rows})`);
    }
    if (l === 0) return;
    tf.tidy(() => this.record(tf.tensor1d(indices.slice(), 'int32'), tf.ones([l]), tf.tensor2d(rowGrads.slice(), [l, this.dim]), 1));
  }

  /** The gradient summed per distinct row (owned by this gradient: valid until the next change), or undefined if empty. */
  summedRows(): SummedRows | undefined {
    if (this.pending.length === 0) return this.summed;
    const parts = this.pending;
    const held = this.summed;
    const next = tf.tidy(() => {
      const all: Occurrences[] = held ? [{ indices: held.slotRows, weights: tf.ones([held.slotRows.size]) as tf.Tensor1D, x: held.grads, perToken: 1 }, ...parts] : parts;
      const total = all.reduce((s, p) => s + p.indices.size, 0);
      if (total >= EXACT_FLOAT_INTS) {
        throw new Error(`DeviceRowGradient: ${total} occurrences since the last step; slots are numbered by a float32 cumulative sum, exact below ${EXACT_FLOAT_INTS} (step more often)`);
      }
      // Token of each occurrence in the concatenated x: floor(o / perToken) + the call's first token.
      let base = 0;
      const tokParts = all.map((p) => {
        const part = tf.add(tf.floorDiv(tf.range(0, p.indices.size, 1, 'int32'), tf.scalar(p.perToken, 'int32')), tf.scalar(base, 'int32'));
        base += p.x.shape[0];
        return part;
      });
      const tok = (tokParts.length === 1 ? tokParts[0]! : tf.concat(tokParts)) as tf.Tensor1D;
      const raw = all.length === 1 ? all[0]!.indices : tf.concat(all.map((p) => p.indices));
      // Invalid rows (-1 of unused slots, out-of-range indices) sort last as row N and get no slot.
      const valid = tf.logicalAnd(tf.greaterEqual(raw, 0), tf.less(raw, this.rows));
      const rows = tf.where(valid, raw, tf.fill([total], this.rows, 'int32'));
      const sorted = tf.topk(tf.neg(tf.cast(rows, 'float32')), total);
      const keys = tf.cast(tf.neg(sorted.values), 'int32') as tf.Tensor1D;
      const order = sorted.indices as tf.Tensor1D;
      const starts = tf.concat([tf.ones([1], 'bool'), tf.notEqual(tf.slice(keys, 1), tf.slice(keys, 0, total - 1))]);
      const isHead = tf.logicalAnd(starts, tf.less(keys, this.rows));
      // Float cumulative sum: exact for counts below 2^24.
      const slot = tf.sub(tf.cast(tf.cumsum(tf.cast(isHead, 'float32')), 'int32'), tf.scalar(1, 'int32')) as tf.Tensor1D;
      const u = Math.min(total, this.rows);
      const heads = groupHeadsProgram(keys, slot, tf.fill([u], -1, 'int32') as tf.Tensor1D, this.rows);
      const w = all.length === 1 ? all[0]!.weights : (tf.concat(all.map((p) => p.weights)) as tf.Tensor1D);
      const x = all.length === 1 ? all[0]!.x : (tf.concat(all.map((p) => p.x)) as tf.Tensor2D);
      return {
        slotRows: slotRowsProgram(keys, heads),
        grads: groupSumProgram(order, keys, heads, tok, w, x),
      };
    });
    this.disposePending();
    if (held) tf.dispose([held.slotRows, held.grads]);
    tf.keep(next.slotRows);
    tf.keep(next.grads);
    this.summed = next;
    return next;
  }

  /** Multiplies every accumulated gradient by `factor` (a number or a scalar tensor, e.g. a clipping scale). */
  scale(factor: number | tf.Scalar): void {
    const s = this.summedRows();
    if (!s) return;
    const grads = tf.keep(tf.tidy(() => tf.mul(s.grads, factor) as tf.Tensor2D));
    s.grads.dispose();
    s.grads = grads;
  }

  /** Sum of squares of the accumulated gradient, on the device (a scalar the caller disposes). */
  sumOfSquaresTensor(): tf.Scalar {
    const s = this.summedRows();
    return s ? tf.tidy(() => tf.sum(tf.square(s.grads)) as tf.Scalar) : tf.scalar(0);
  }

  /** Not available on the device; throws (use sumOfSquaresTensor). */
  sumOfSquares(): number {
    throw new Error(`DeviceRowGradient.sumOfSquares: ${DEVICE_SYNC_HINT}`);
  }

  /** Not available on the device; throws (use sumOfSquaresTensor). */
  norm(): number {
    throw new Error(`DeviceRowGradient.norm: ${DEVICE_SYNC_HINT}`);
  }

  private disposePending(): void {
    for (const p of this.pending) tf.dispose([p.indices, p.weights, p.x]);
    this.pending = [];
  }

  /** Forgets every recorded occurrence and sum (releases their tensors). */
  clear(): void {
    this.disposePending();
    if (this.summed) tf.dispose([this.summed.slotRows, this.summed.grads]);
    this.summed = undefined;
  }

  dispose(): void {
    this.clear();
  }
}
