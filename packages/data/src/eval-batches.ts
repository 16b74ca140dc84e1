// N tokens in the split, T seqLen, B batch size, W windows.
//
// Evaluation batches: every window of a split exactly once, in a fixed order (stream order), windows
// not overlapping, so each target token is scored once. Layout as in training: [rows, seqLen].
// With W = floor((N - 1) / seqLen) windows, the targets cover W * seqLen of the N - 1 predictable
// tokens; the remainder (< seqLen tokens at the end) is reported as skipped. `maxBatches` evaluates
// an evenly spaced subset of the windows instead (same subset every time).
import { DataError } from './errors.js';
import { checkPositiveInt, toTokenSource, type TokenInput } from './token-input.js';
import type { TokenSource } from './token-source.js';
import type { Tokenizer } from './tokenizer.js';

export interface EvalBatchesOptions {
  batchSize: number;
  seqLen: number;
  /** Evaluate at most this many batches (evenly spaced windows); default: all windows. */
  maxBatches?: number;
  /**
   * A tokenizer or its `tokenByteLengths()`: each batch then reports the UTF-8 bytes its targets stand
   * for, the exact denominator of bits-per-byte for the covered tokens.
   */
  bytesPerToken?: Tokenizer | Uint16Array;
}

export interface EvalBatch {
  /** [batchSize, seqLen] row-major. */
  inputs: Int32Array;
  /** [batchSize, seqLen] row-major. */
  targets: Int32Array;
  /** Rows in this batch: the option's batchSize, except possibly fewer in the last batch. */
  batchSize: number;
  seqLen: number;
  /** 0-based batch index. */
  index: number;
  /** UTF-8 bytes behind this batch's targets, when `bytesPerToken` was given; else null. */
  targetBytes: number | null;
}

export class EvalBatches implements Iterable<EvalBatch> {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly numTokens: number;
  /** Windows visited (all of them, or the evenly spaced subset). */
  readonly numWindows: number;
  readonly numBatches: number;
  /** Target tokens scored: numWindows * seqLen. */
  readonly tokensCovered: number;
  /** Predictable tokens (numTokens - 1) that no window scores. */
  readonly tokensSkipped: number;
  private readonly source: TokenSource;
  private readonly totalWindows: number;
  private readonly byteLengths: Uint16Array | null;

  constructor(tokens: TokenInput, options: EvalBatchesOptions) {
    this.source = toTokenSource(tokens);
    this.batchSize = checkPositiveInt(options?.batchSize, 'batchSize');
    this.seqLen = checkPositiveInt(options.seqLen, 'seqLen');
    this.numTokens = this.source.numTokens;
    this.totalWindows = this.numTokens > 1 ? Math.floor((this.numTokens - 1) / this.seqLen) : 0;
    if (this.totalWindows === 0) {
      throw new DataError(
        `evaluation split too small: ${this.numTokens} tokens, one window needs seqLen + 1 = ${this.seqLen + 1}`,
        { file: this.source.label },
      );
    }
    const cap = options.maxBatches === undefined ? Infinity : checkPositiveInt(options.maxBatches, 'maxBatches') * this.batchSize;
    this.numWindows = Math.min(this.totalWindows, cap);
    this.numBatches = Math.ceil(this.numWindows / this.batchSize);
    this.tokensCovered = this.numWindows * this.seqLen;
    this.tokensSkipped = this.numTokens - 1 - this.tokensCovered;
    const bpt = options.bytesPerToken;
    this.byteLengths = bpt === undefined ? null : bpt instanceof Uint16Array ? bpt : bpt.tokenByteLengths();
  }

  /** First token of the i-th visited window. */
  windowStart(i: number): number {
    // Evenly spaced subset: window floor(i * total / count); the identity when all are visited.
    return Math.floor((i * this.totalWindows) / this.numWindows) * this.seqLen;
  }

  /** UTF-8 bytes behind all covered targets (one pass over the windows); null without `bytesPerToken`. */
  bytesCovered(): number | null {
    if (this.byteLengths === null) return null;
    let total = 0;
    for (const batch of this) total += batch.targetBytes!;
    return total;
  }

  *[Symbol.iterator](): Iterator<EvalBatch> {
    const T = this.seqLen;
    const row = new Int32Array(T + 1);
    const lengths = this.byteLengths;
    for (let index = 0; index < this.numBatches; index++) {
      const first = index * this.batchSize;
      const rows = Math.min(this.batchSize, this.numWindows - first);
      const inputs = new Int32Array(rows * T);
      const targets = new Int32Array(rows * T);
      let targetBytes = 0;
      for (let r = 0; r < rows; r++) {
        this.source.read(this.windowStart(first + r), T + 1, row, 0);
        inputs.set(row.subarray(0, T), r * T);
        targets.set(row.subarray(1), r * T);
        if (lengths) for (let t = 1; t <= T; t++) targetBytes += lengths[row[t]!]!;
      }
      yield { inputs, targets, batchSize: rows, seqLen: T, index, targetBytes: lengths ? targetBytes : null };
    }
  }
}

/** Bits per UTF-8 byte from a summed negative log-likelihood in nats: tokenizer-independent. */
export function bitsPerByte(totalNllNats: number, bytes: number): number {
  if (!(bytes > 0)) throw new DataError(`bitsPerByte needs a positive byte count, got ${bytes}`);
  return totalNllNats / (Math.LN2 * bytes);
}

/** UTF-8 bytes the given ids stand for (sum of `tokenByteLengths()` over them). */
export function countTokenBytes(ids: ArrayLike<number>, bytesPerToken: Tokenizer | Uint16Array): number {
  const lengths = bytesPerToken instanceof Uint16Array ? bytesPerToken : bytesPerToken.tokenByteLengths();
  let total = 0;
  for (let i = 0; i < ids.length; i++) total += lengths[ids[i]!]!;
  return total;
}
