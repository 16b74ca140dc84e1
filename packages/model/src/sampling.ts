// Picks the next token from one row of logits: greedy at temperature 0, otherwise a draw from
// softmax(logits / temperature), restricted to the top-k logits when topK is set.
// Computed in float64 on the host; the row has V entries.
import type { Rng } from '@peer/backend';

export interface SamplingOptions {
  /** 0 = greedy (argmax, lowest index on ties). Default 1. */
  temperature: number;
  /** Keep only the k most likely tokens (ties at the k-th logit broken by lower index). */
  topK?: number;
}

/** The index of the largest logit (the lowest such index). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** The sampling distribution over token ids (zero outside the top k); exported for tests. */
export function samplingProbabilities(logits: ArrayLike<number>, options: SamplingOptions): Float64Array {
  const V = logits.length;
  const probs = new Float64Array(V);
  if (options.temperature === 0) {
    probs[argmax(logits)] = 1;
    return probs;
  }
  let keep: number[] = Array.from({ length: V }, (_, i) => i);
  if (options.topK !== undefined && options.topK < V) {
    keep = keep.sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, options.topK);
  }
  let max = -Infinity;
  for (const i of keep) max = Math.max(max, logits[i]!);
  let total = 0;
  for (const i of keep) {
    probs[i] = Math.exp((logits[i]! - max) / options.temperature);
    total += probs[i]!;
  }
  for (const i of keep) probs[i] = probs[i]! / total;
  return probs;
}

/** Draws one token id; consumes exactly one `rng.float()` unless greedy. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, rng: Rng): number {
  if (options.temperature === 0) return argmax(logits);
  const probs = samplingProbabilities(logits, options);
  const u = rng.float();
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i]!;
    last = i;
    if (u < cumulative) return i;
  }
  // Rounding can leave the cumulative sum a hair below 1.
  return last;
}
