// Per-forward routing statistics of the MoE layers and the input check they share.
import type * as tf from '@tensorflow/tfjs-core';

export interface MoeRoutingStats {
  /** Tokens T in the batch. */
  tokens: number;
  /** Capacity C (slots per expert). */
  capacity: number;
  /** [E] tokens each expert processed. */
  expertLoad: Int32Array;
  /** [E] token choice: assignments that chose each expert before capacity; expert choice: equal to expertLoad. */
  requestedLoad: Int32Array;
  /** Token choice: assignments dropped at a full expert (0 for expert choice). */
  droppedAssignments: number;
  /** Tokens no expert processed (MoE output 0; the residual carries them). */
  droppedTokens: number;
}

/** [B, S] of a float32 [B, S, D] input, or one error naming the layer and the shape. */
export function checkInput3D(layer: string, x: tf.Tensor, dim: number): [number, number] {
  if (x.rank !== 3 || x.shape[2] !== dim) throw new Error(`${layer}: x has shape [${x.shape.join(', ')}], expected [batch, seq, ${dim}]`);
  if (x.dtype !== 'float32') throw new Error(`${layer}: x has dtype ${x.dtype}, expected float32`);
  if (x.size === 0) throw new Error(`${layer}: x is empty (shape [${x.shape.join(', ')}])`);
  return [x.shape[0]!, x.shape[1]!];
}
