// The expert-table contract: what the PEER layer and PKM use of a [N, D] table of rows, so that a
// table may live in host memory (HostExpertTable) or on a device (DeviceExpertTable). Nothing here exposes
// where the rows are: the mixture primitives take and return tensors, occurrences travel as an
// opaque RowSelection, and gradients as a RowGradient made by the table itself.
//
// Axes: N table rows, D row width, T tokens, R rows read per token, L = T * R occurrences.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedArray, NamedArrayData, NamedArraySpec } from './named-array.js';

/** How rows are stored: float32 for training; float16/bfloat16 halve memory for inference. */
export type TableStorage = 'float32' | 'float16' | 'bfloat16';

/** The occurrences of one mixture call, [T, R] table rows, prepared by the table that reads them. */
export interface RowSelection {
  readonly tokens: number;
  readonly perToken: number;
}

/** Where row gradients go: `rowGrads` ([L * D], valid only during the call) adds to rows `indices` ([L]). */
export interface RowGradientSink {
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
}

/** A table's row-sparse gradient: the rows a step touched, each once, repeated lookups summed. */
export interface RowGradient extends RowGradientSink {
  readonly rows: number;
  readonly dim: number;
  /** Distinct rows touched since the last clear (U). */
  readonly size: number;
  /** Adds `rowGrads` ([L * D]) to rows `indices` ([L]). */
  accumulate(indices: Int32Array, rowGrads: Float32Array): void;
  /** Multiplies every accumulated gradient by `factor`. */
  scale(factor: number): void;
  /** Sum of squares (host gradients only: a device gradient throws, see sumOfSquaresTensor). */
  sumOfSquares(): number;
  /** Euclidean norm (host gradients only: a device gradient throws). */
  norm(): number;
  /** Sum of squares as a scalar tensor the caller disposes: on a device gradient it stays on the device. */
  sumOfSquaresTensor(): tf.Scalar;
  clear(): void;
}

/** A source a table restores from in chunks (a lazy `Checkpoint`). */
export interface TableSource {
  spec(name: string): NamedArraySpec | undefined;
  readInto(name: string, out: NamedArrayData, start?: number): void;
}

/**
 * Where a table keeps its rows: 'host' tables (HostExpertTable) run their kernels in WebAssembly
 * memory on any engine but webgpu; 'device' tables keep rows, moments and row gradients in GPU
 * buffers of the webgpu engine and never read them back during training.
 */
export type TablePlacement = 'host' | 'device';

export interface ExpertTable {
  readonly name: string;
  readonly placement: TablePlacement;
  /** N. */
  readonly rows: number;
  /** D. */
  readonly dim: number;
  readonly storage: TableStorage;
  /** Bytes held by the rows. */
  readonly bytes: number;
  /** Rows `indices` as a float32 tensor [L, D] (no gradient flows back to the table). */
  gather(indices: Int32Array): tf.Tensor2D;
  /**
   * Prepares the occurrences `indices` ([T * perToken], row-major [T, R]) of a mixture call. Host
   * tables take an Int32Array (a tensor is read once) and check the range; device tables need an
   * int32 tensor (any shape with T * perToken elements), which stays on the device (out-of-range
   * rows are the caller's bug there: they read zeros).
   */
  select(indices: Int32Array | tf.Tensor, perToken: number): RowSelection;
  /** out[t, r] = row(e(t, r)) . x[t] for x [T, D]; returns [T, R]. */
  rowDots(selection: RowSelection, x: tf.Tensor2D): tf.Tensor2D;
  /** y[t] = sum_r weights[t, r] row(e(t, r)) for weights [T, R]; returns [T, D]. */
  weightedRowSum(selection: RowSelection, weights: tf.Tensor2D): tf.Tensor2D;
  /**
   * The backward of `weightedRowSum` towards the rows: grad(e) += sum_{(t, r) -> e} weights[t, r] x[t]
   * for x [T, D], into a gradient of this table (`createGradient`, the fast path) or any sink (which
   * receives the distinct rows ascending, once each). Each distinct row's sum runs over its
   * occurrences in order, then adds to what the gradient held.
   */
  accumulateRowGradients(selection: RowSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowGradientSink): void;
  /**
   * `rowDots(selection, x)` and `accumulateRowGradients(selection, weights, x, into)`, the same
   * numbers, where a table can do both in one pass over the rows (a backward pass needs both with
   * the same x: the gradient towards the weights and towards the rows).
   */
  rowDotsAndGradients(selection: RowSelection, x: tf.Tensor2D, weights: tf.Tensor2D, into: RowGradientSink): tf.Tensor2D;
  /** A row-sparse gradient for this table. */
  createGradient(): RowGradient;
  /**
   * Makes `stateEntries` readable: a no-op on host tables; a device table reads its rows once,
   * asynchronously (await it before `stateEntries`, e.g. before writing a checkpoint).
   */
  prepareState(): Promise<void>;
  /** One entry `<prefix><name>` [N, D] in the storage dtype (a device table: F32, after `prepareState`). */
  stateEntries(prefix?: string): NamedArray[];
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
  restoreFrom(prefix: string, source: TableSource): void;
  dispose(): void;
}
