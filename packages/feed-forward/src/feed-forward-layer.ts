// The contract every feed-forward block of the transformer implements: dense FFW, MoE (token and
// expert choice), PKM (@peer/baselines) and PEER (@peer/layer). The model only talks to this
// interface; the layers implement it, and the registry of @peer/model builds them by kind.
//
// Axes: B batch, S sequence length, D model width.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedArray, UsageOptions, UsageReport } from '@peer/expert-store';

export type { UsageOptions, UsageReport };

/** Every feed-forward kind a model config can name, in the order the CLI lists them. */
export const FEED_FORWARD_KINDS = ['dense', 'moe', 'moe-ec', 'pkm', 'peer'] as const;

export type FeedForwardKind = (typeof FEED_FORWARD_KINDS)[number];

export interface FeedForwardOutput {
  /** [B, S, D] */
  y: tf.Tensor3D;
  /** Auxiliary loss to add to the objective, already weighted (MoE load balancing, router z-loss). */
  auxLoss?: tf.Scalar;
}

export interface ApplyMode {
  /** Training selects batch statistics (query BN), dropout, training capacity and the auxiliary losses. */
  training: boolean;
}

/** Reads one saved entry by its full name; undefined when the source has no such entry. */
export type StateEntryGetter = (name: string) => NamedArray | undefined;

export interface FeedForwardLayer {
  readonly kind: FeedForwardKind;
  /** Model width D. */
  readonly dim: number;
  /**
   * Forward on [B, S, D]. Runs inside the caller's `tf.tidy` / `tf.variableGrads`; tensors it does not
   * return are released by the caller's scope. `training` selects batch statistics and dropout.
   */
  apply(x: tf.Tensor3D, mode: ApplyMode): FeedForwardOutput;
  /** Dense trainable variables, updated by the model's AdamW. */
  trainableVariables(): tf.Variable[];
  /**
   * Applies, then clears, the row-sparse gradients that backward passes since the last call
   * accumulated for tables held outside tfjs. `lrScale` multiplies the sparse learning rate (the
   * schedule's factor). No-op for layers without sparse tables.
   */
  sparseStep(lrScale: number): void;
  /** Drops accumulated sparse gradients without applying them (e.g. a skipped, non-finite step). */
  zeroSparseGrads(): void;
  /** Forward FLOPs per token (a multiply-add counts 2). */
  flopsPerToken(): number;
  /** Parameters used to process one token. */
  activeParamsPerToken(): number;
  /** All parameters of the layer. */
  totalParams(): number;
  /**
   * Starts (or restarts) accumulating routing statistics in forward passes; undefined for dense.
   * Recording only reads the routing results: the layer computes the same numbers with it on.
   */
  startUsage?(options?: UsageOptions): void;
  /** Routing statistics accumulated since `startUsage`; stops accumulating. */
  stopUsage?(): UsageReport;
  /**
   * Makes `stateEntries` work on a device engine (webgpu), where tensors cannot be read synchronously:
   * reads every tensor the state holds asynchronously once (`makeReadable` of @peer/backend), so that
   * their synchronous reads return the host copy. A no-op on wasm and cpu. Optional: a layer without
   * it only runs on engines that read synchronously, and callers skip it (`await layer.prepareState?.()`).
   */
  prepareState?(): Promise<void>;
  /**
   * Every piece of state (dense weights, BN statistics, sparse tables, sparse optimizer state), names
   * prefixed with `prefix`. On a device engine, await `prepareState()` first.
   */
  stateEntries(prefix: string): NamedArray[];
  /** Restores what `stateEntries` produced; throws naming the entry on a missing name or a shape mismatch. */
  loadStateEntries(prefix: string, get: StateEntryGetter): void;
  /** Releases variables and tables. */
  dispose(): void;
}
