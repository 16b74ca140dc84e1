// The contract every feed-forward block of the transformer implements: dense FFW, MoE (token and
// expert choice), PKM (@peer/baselines) and PEER (@peer/layer). The model only talks to this
// interface; the layers conform to it structurally and do not import it.
//
// Axes: B batch, S sequence, D model width.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';

export type FeedForwardKind = 'dense' | 'moe' | 'moe-ec' | 'pkm' | 'peer';

export interface FeedForwardOutput {
  /** [B, S, D] */
  y: tf.Tensor3D;
  /** Auxiliary loss to add to the objective, already weighted (MoE load balancing, router z-loss). */
  auxLoss?: tf.Scalar;
}

export interface UsageReport {
  /** Number of routing targets (experts or memory slots). */
  count: number;
  /** Fraction of targets with non-zero accumulated router weight (paper: "expert usage"). */
  usage: number;
  /** KL(z || uniform) of the normalized accumulated router weights (paper: "unevenness"). */
  unevenness: number;
  /** Share of total router weight held by the top 1% of targets. */
  top1PercentShare: number;
  /** Accumulated router weight per target (length `count`). */
  weights: Float64Array;
  /** Number of retrievals per target (length `count`). */
  hits: Float64Array;
}

export interface FeedForwardLayer {
  readonly kind: FeedForwardKind;
  /** Model width D. */
  readonly dim: number;
  /**
   * Forward on [B, S, D]. Runs inside the caller's `tf.tidy` / `tf.variableGrads`; tensors it does not
   * return are released by the caller's scope. `training` selects batch statistics and dropout.
   */
  apply(x: tf.Tensor3D, mode: { training: boolean }): FeedForwardOutput;
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
  /** Starts (or restarts) accumulating routing statistics in forward passes; undefined for dense. */
  startUsage?(): void;
  /** Routing statistics accumulated since `startUsage`; stops accumulating. */
  stopUsage?(): UsageReport;
  /** Every piece of state (dense weights, BN statistics, sparse tables, sparse optimizer state), names prefixed with `prefix`. */
  stateEntries(prefix: string): NamedArray[];
  /** Restores what `stateEntries` produced; throws naming the entry on a missing name or a shape mismatch. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
  /** Releases variables and tables. */
  dispose(): void;
}
