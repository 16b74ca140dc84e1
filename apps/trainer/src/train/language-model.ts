// The part of @peer/model's TransformerLM that training and evaluation use. Written as an interface
// so the loop reads against exactly what it needs.
//
// Axes: B batch, S sequence.
import type * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';

export interface LanguageModel {
  /** Mean next-token cross-entropy (nats) over [B, S] int32 inputs/targets, plus weighted aux losses. */
  loss(inputs: tf.Tensor2D, targets: tf.Tensor2D, mode: { training: boolean }): { loss: tf.Scalar; auxLoss?: tf.Scalar };
  trainableVariables(): tf.Variable[];
  sparseStep(lrScale: number): void;
  zeroSparseGrads(): void;
  flopsPerToken(): number;
  /** Makes `stateEntries` work on a device engine (reads the state asynchronously once). */
  prepareState?(): Promise<void>;
  stateEntries(): NamedArray[];
  loadStateEntries(get: (name: string) => NamedArray | undefined): void;
}
