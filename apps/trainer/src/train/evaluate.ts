// Validation loss, perplexity and bits-per-byte of a model over a token split.
//
// Axes: B rows of a batch, S sequence.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice } from '@peer/backend';
import { EvalBatches, type TokenSource, type Tokenizer } from '@peer/data';
import { checkTokenIds } from '@peer/model';
import type { LanguageModel } from './language-model.js';

export interface EvalResult {
  /** Mean next-token cross-entropy in nats. */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Total nats / ln 2 / UTF-8 bytes behind the scored tokens: comparable across tokenizers. */
  bitsPerByte: number;
  /** Target tokens scored. */
  tokens: number;
  /** UTF-8 bytes behind them. */
  bytes: number;
  batches: number;
}

/**
 * Scores `maxBatches` evenly spaced batches of non-overlapping windows (0 = every window) of
 * `tokens` in evaluation mode (no dropout, running norm statistics). Same batches every call.
 */
export async function evaluate(
  model: LanguageModel,
  tokens: TokenSource,
  options: { batchSize: number; seqLen: number; maxBatches: number; tokenizer: Tokenizer; vocabSize?: number },
): Promise<EvalResult> {
  const vocabSize = options.vocabSize ?? options.tokenizer.vocabSize;
  const batches = new EvalBatches(tokens, {
    batchSize: options.batchSize,
    seqLen: options.seqLen,
    maxBatches: options.maxBatches > 0 ? options.maxBatches : undefined,
    bytesPerToken: options.tokenizer,
  });
  let nats = 0;
  let count = 0;
  let bytes = 0;
  for (const batch of batches) {
    const shape: [number, number] = [batch.batchSize, batch.seqLen];
    if (onDevice()) {
      // The model checks uploaded ids only where it can read them back synchronously.
      checkTokenIds(batch.inputs, batch.seqLen, vocabSize, 'inputs');
      checkTokenIds(batch.targets, batch.seqLen, vocabSize, 'targets');
    }
    const meanLoss = tf.tidy(() => {
      const inputs = tf.tensor2d(batch.inputs, shape, 'int32');
      const targets = tf.tensor2d(batch.targets, shape, 'int32');
      return model.loss(inputs, targets, { training: false }).loss;
    });
    const n = batch.batchSize * batch.seqLen;
    // float64 accumulation of per-batch means weighted by their token counts
    try {
      nats += (await meanLoss.data())[0]! * n;
    } finally {
      meanLoss.dispose();
    }
    count += n;
    bytes += batch.targetBytes!;
  }
  const loss = nats / count;
  return {
    loss,
    perplexity: Math.exp(loss),
    bitsPerByte: bytes > 0 ? nats / Math.LN2 / bytes : NaN,
    tokens: count,
    bytes,
    batches: batches.numBatches,
  };
}
