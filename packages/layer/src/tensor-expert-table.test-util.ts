// Test double of a device expert table (not exported by the package): the ExpertTable contract in
// plain tfjs ops on whatever engine is active, rows in a tf.Variable, selections as int32 tensors,
// and a gradient kept as a dense [N, D] tensor. It lets the device mixture run on webgpu before the
// real DeviceExpertTable (@peer/expert-store) exists here; it is tiny-table test code, not a model
// of how a device table should work (that one never builds a dense gradient).
// Axes: N table rows, D row width, T tokens, R rows per token, L = T * R occurrences.
import * as tf from '@tensorflow/tfjs-core';
import type { ExpertTable, NamedArray, RowGradient, RowGradientSink, RowSelection } from '@peer/expert-store';

interface TensorSelection extends RowSelection {
  /** int32 [L] */
  readonly rows: tf.Tensor1D;
}

const NOT_HERE = 'TensorExpertTable (test double) has no';

/** A dense [N, D] gradient tensor, summed on the engine; reads only through `dense`. */
export class TensorRowGradient implements RowGradient {
  dense: tf.Tensor2D;
  constructor(
    readonly rows: number,
    readonly dim: number,
  ) {
    this.dense = tf.zeros([rows, dim]);
  }
  get size(): number {
    throw new Error(`${NOT_HERE} synchronous size`);
  }
  add(part: tf.Tensor2D): void {
    const sum = tf.add(this.dense, part) as tf.Tensor2D;
    this.dense.dispose();
    this.dense = tf.keep(sum);
  }
  accumulate(): void {
    throw new Error(`${NOT_HERE} host accumulate`);
  }
  scale(factor: number): void {
    const scaled = tf.tidy(() => tf.mul(this.dense, factor) as tf.Tensor2D);
    this.dense.dispose();
    this.dense = tf.keep(scaled);
  }
  sumOfSquaresTensor(): tf.Scalar {
    return tf.tidy(() => tf.sum(tf.square(this.dense)) as tf.Scalar);
  }
  sumOfSquares(): number {
    throw new Error(`${NOT_HERE} synchronous sumOfSquares`);
  }
  norm(): number {
    throw new Error(`${NOT_HERE} synchronous norm`);
  }
  clear(): void {
    this.dense.dispose();
    this.dense = tf.keep(tf.zeros([this.rows, this.dim]));
  }
  dispose(): void {
    this.dense.dispose();
  }
}

export class TensorExpertTable implements ExpertTable {
  readonly placement = 'device' as const;
  readonly storage = 'float32' as const;
  readonly table: tf.Variable<tf.Rank.R2>;
  constructor(
    readonly name: string,
    readonly rows: number,
    readonly dim: number,
    values: Float32Array,
  ) {
    this.table = tf.tidy(() => tf.variable(tf.tensor2d(values, [rows, dim]), false));
  }
  get bytes(): number {
    return this.rows * this.dim * 4;
  }
  gather(indices: Int32Array): tf.Tensor2D {
    return tf.tidy(() => tf.gather(this.table, tf.tensor1d(indices, 'int32')));
  }
  select(indices: Int32Array | tf.Tensor, perToken: number): TensorSelection {
    if (!(indices instanceof tf.Tensor) || indices.dtype !== 'int32') throw new Error('TensorExpertTable.select: needs an int32 tensor');
    return { tokens: indices.size / perToken, perToken, rows: tf.reshape(indices, [indices.size]) };
  }
  /** [T, R, D] rows of a selection. */
  private picked(sel: RowSelection): tf.Tensor3D {
    const s = sel as TensorSelection;
    return tf.reshape(tf.gather(this.table, s.rows), [s.tokens, s.perToken, this.dim]);
  }
  rowDots(sel: RowSelection, x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.sum(tf.mul(this.picked(sel), tf.expandDims(x, 1)), 2));
  }
  weightedRowSum(sel: RowSelection, weights: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.sum(tf.mul(this.picked(sel), tf.expandDims(weights, 2)), 1));
  }
  accumulateRowGradients(sel: RowSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowGradientSink): void {
    if (!(into instanceof TensorRowGradient)) throw new Error(`${NOT_HERE} host sinks`);
    const s = sel as TensorSelection;
    const part = tf.tidy(() => {
      const occurrences = tf.reshape(tf.mul(tf.expandDims(weights, 2), tf.expandDims(x, 1)), [s.tokens * s.perToken, this.dim]);
      return tf.unsortedSegmentSum(occurrences, s.rows, this.rows) as tf.Tensor2D;
    });
    into.add(part);
    part.dispose();
  }
  createGradient(): TensorRowGradient {
    return new TensorRowGradient(this.rows, this.dim);
  }
  stateEntries(): NamedArray[] {
    throw new Error(`${NOT_HERE} state entries`);
  }
  loadStateEntries(): void {
    throw new Error(`${NOT_HERE} state entries`);
  }
  restoreFrom(): void {
    throw new Error(`${NOT_HERE} state entries`);
  }
  async prepareState(): Promise<void> {
    await this.table.data();
  }
  dispose(): void {
    this.table.dispose();
  }
}
