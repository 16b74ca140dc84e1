// Structural copies of the @peer/model feed-forward contract (packages/model/src/feed-forward.ts).
// @peer/model depends on this package, so the layers here conform to the contract without importing it.
//
// Axes: B batch, S sequence, D model width.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';

export interface FeedForwardOutput {
  /** [B, S, D] */
  y: tf.Tensor3D;
  /** Auxiliary loss to add to the objective, already weighted (MoE load balancing, router z-loss). */
  auxLoss?: tf.Scalar;
}

export interface ApplyMode {
  /** Training selects batch statistics (query BN), training capacity and the auxiliary losses. */
  training: boolean;
}

export interface UsageReport {
  /** Number of routing targets (experts or memory slots). */
  count: number;
  /** Fraction of targets with non-zero accumulated router weight (paper: "expert usage"). */
  usage: number;
  /** KL(z || uniform) of the normalized accumulated router weights (paper: "unevenness"). */
  unevenness: number;
  /** Share of total router weight held by the top 1% of targets (at least one target). */
  top1PercentShare: number;
  /** Accumulated router weight per target (length `count`). */
  weights: Float64Array;
  /** Number of retrievals per target (length `count`). */
  hits: Float64Array;
}

/** Reads one saved entry by its full name; undefined when the source has no such entry. */
export type StateEntryGetter = (name: string) => NamedArray | undefined;
