// Product-key retrieval: exact top-k over N = n^2 keys at O(n + k^2) cost per query and head.
// Axes: T tokens, h heads, H' key sets (1 shared, or h), n = sqrt(N) sub-keys per half, dk key
// width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { formatValue } from '@peer/backend';
import { checkInteger, checkShape, checkTensor, MAX_SQRT_KEYS } from './checks.js';
import { gatheredScores } from './gathered-scores.js';
import { leadingRow } from './leading-rows.js';
import type { SubKeyTables } from './product-keys.js';
import { candidatePairs, PACKED_FIRST, PACKED_SCORE, PACKED_SECOND, selectTopK } from './select-top-k.js';
import { untaped } from './untaped.js';

/** Default cap on the elements of the largest temporary of one chunk (64 MiB of float32). */
export const DEFAULT_MAX_CHUNK_ELEMENTS = 2 ** 24;

export interface RetrieveOptions {
  /** Keys retrieved per token and head, 1 <= k <= sqrt(N). */
  k: number;
  /**
   * Sub-keys kept from each half, k <= candidateK <= sqrt(N). Default k. The result is the exact
   * top-k for every allowed value, so values above k change nothing (not even the work): the option
   * exists for parity with implementations that expose it (PEER-pytorch's `product_key_topk`).
   */
  candidateK?: number;
  /**
   * Tokens per chunk. Default: as many as keep the largest temporary ([chunk, h, n] in the forward
   * pass, [chunk, h, k, dk] in the backward) under `maxChunkElements`.
   */
  chunkSize?: number;
  /** Element cap that picks the default chunk size. Default 2^24. */
  maxChunkElements?: number;
}

export interface Retrieval {
  /** Expert indices `a * sqrt(N) + b`, int32 [T, h, k], best first. Not connected to the gradient tape. */
  indices: tf.Tensor3D;
  /** `q . [C1_a ; C2_b]`, float32 [T, h, k], descending; differentiable w.r.t. queries and sub-keys. */
  scores: tf.Tensor3D;
}

const WHERE = 'retrieve';

/**
 * For each token t and head h, the k keys with the largest `queries[t, h] . [C1[h, a] ; C2[h, b]]`
 * over all N = sqrt(N)^2 pairs (a, b), found from the top-k of each half and the sums of the rank
 * pairs that can reach the top-k. The first dk features of each head's query meet C1, the last dk
 * meet C2. Runs in chunks of tokens to bound memory. The caller owns both returned tensors.
 */
export function retrieve(queries: tf.Tensor, keys: SubKeyTables, options: RetrieveOptions): Retrieval {
  const plan = planRetrieval(queries, keys, options);
  const q = queries as tf.Tensor3D;
  const c1 = keys.subKeys1 as tf.Tensor3D;
  const c2 = keys.subKeys2 as tf.Tensor3D;
  return tf.tidy(() => {
    const packed = untaped(() =>
      selectTopK(q, tf.transpose(c1, [0, 2, 1]), tf.transpose(c2, [0, 2, 1]), {
        ...plan,
        chunkTokens: plan.forwardChunk,
      }),
    );
    // Unpacking runs off the tape too: a taped gather would keep the packed tensor for a backward.
    const values = untaped(() => leadingRow(packed, PACKED_SCORE) as tf.Tensor3D);
    const first = untaped(() => tf.cast(leadingRow(packed, PACKED_FIRST), 'int32') as tf.Tensor3D);
    const second = untaped(() => tf.cast(leadingRow(packed, PACKED_SECOND), 'int32') as tf.Tensor3D);
    packed.dispose();
    const indices = untaped(() => tf.add(tf.mul(first, tf.scalar(plan.sqrtN, 'int32')), second) as tf.Tensor3D);
    const scores = gatheredScores(q, c1, c2, values, first, second, {
      ...plan,
      chunkTokens: plan.backwardChunk,
    });
    return { indices, scores };
  });
}

interface RetrievalPlan {
  tokens: number;
  heads: number;
  dimKey: number;
  sqrtN: number;
  k: number;
  forwardChunk: number;
  backwardChunk: number;
}

function planRetrieval(queries: tf.Tensor, keys: SubKeyTables, options: RetrieveOptions): RetrievalPlan {
  if (typeof keys !== 'object' || keys === null) throw new Error(`${WHERE}: keys must be ProductKeys or { subKeys1, subKeys2 }, got ${formatValue(keys)}`);
  const c1 = checkTensor(WHERE, 'keys.subKeys1', keys.subKeys1, 3, '[keySets, sqrtN, dimKey]');
  const c2 = checkTensor(WHERE, 'keys.subKeys2', keys.subKeys2, 3, '[keySets, sqrtN, dimKey]');
  const [sets, sqrtN, dimKey] = c1.shape as [number, number, number];
  if (sqrtN < 2 || sqrtN > MAX_SQRT_KEYS) {
    throw new Error(`${WHERE}: keys.subKeys1 must hold between 2 and ${MAX_SQRT_KEYS} sub-keys (axis 1), got shape [${c1.shape.join(', ')}]`);
  }
  checkShape(WHERE, 'keys.subKeys2', c2.shape, c1.shape);

  checkTensor(WHERE, 'queries', queries, 3, '[tokens, heads, 2 * dimKey]');
  const [tokens, heads] = queries.shape as [number, number, number];
  const expectedHeads = keys.heads ?? (sets === 1 ? heads : sets);
  checkShape(WHERE, 'queries', queries.shape, ['tokens', expectedHeads, 2 * dimKey]);
  if (sets !== 1 && sets !== heads) {
    throw new Error(`${WHERE}: keys.subKeys1 must have 1 (shared) or ${heads} (one per head) key sets on axis 0, got shape [${c1.shape.join(', ')}]`);
  }

  if (typeof options !== 'object' || options === null) throw new Error(`${WHERE}: options must be an object like { k: 16 }, got ${formatValue(options)}`);
  const k = checkIntegerIn('options.k', options.k, 1, sqrtN, `sqrt(numKeys) = ${sqrtN}`);
  if (options.candidateK !== undefined) checkIntegerIn('options.candidateK', options.candidateK, k, sqrtN, `k = ${k} and sqrt(numKeys) = ${sqrtN}`);
  const maxElements = options.maxChunkElements === undefined ? DEFAULT_MAX_CHUNK_ELEMENTS : checkInteger(WHERE, 'options.maxChunkElements', options.maxChunkElements, 1);
  const chunkSize = options.chunkSize === undefined ? undefined : checkInteger(WHERE, 'options.chunkSize', options.chunkSize, 1);

  const perToken = (width: number) => Math.max(1, Math.floor(maxElements / (heads * width)));
  return {
    tokens,
    heads,
    dimKey,
    sqrtN,
    k,
    forwardChunk: chunkSize ?? perToken(Math.max(sqrtN, candidatePairs(k).first.length)),
    backwardChunk: chunkSize ?? perToken(k * dimKey),
  };
}

function checkIntegerIn(name: string, value: unknown, min: number, max: number, bounds: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${WHERE}: ${name} must be an integer from ${min} to ${max} (bounded by ${bounds}), got ${formatValue(value)}`);
  }
  return value;
}
