// Axes: B batch size, S sequence length (seqLen), L tokens in the stream, W windows per epoch.
//
// Training batches: the token stream cut into windows of seqLen + 1 tokens (inputs = the first
// seqLen, targets = the last seqLen, i.e. the inputs shifted by one), visited in a seeded random order
// that changes every epoch. Layout of a batch: B windows, row-major [B, seqLen] Int32Arrays.
//
// Epoch e: with W = floor((L - 1) / seqLen) windows and slack = L - 1 - W * seqLen spare tokens, the
// window grid starts at a random offset in [0, slack] (so window boundaries move between epochs when
// the stream is not an exact multiple), and the W windows are visited in a Fisher-Yates permutation;
// floor(W / B) batches per epoch, the W mod B left-over windows of the permutation are skipped.
// Everything an epoch draws comes from one xoroshiro128+ stream (pure-rand) whose state at the start
// of the epoch is saved by state(): resuming replays that epoch's draws and continues exactly.
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import { DataError } from './errors.js';
import { checkPositiveInt, toTokenSource, type TokenInput } from './token-input.js';
import type { TokenSource } from './token-source.js';

export interface BatcherOptions {
  batchSize: number;
  seqLen: number;
  /** Seed of the window order (default 0). */
  seed?: number;
  /** Shuffle windows and offsets each epoch (default true); false gives windows in stream order. */
  shuffle?: boolean;
}

export interface Batch {
  /** [batchSize, seqLen] row-major. */
  inputs: Int32Array;
  /** [batchSize, seqLen] row-major: the inputs shifted by one token. */
  targets: Int32Array;
  batchSize: number;
  seqLen: number;
  /** 0-based epoch this batch belongs to. */
  epoch: number;
  /** 0-based index of this batch since the start (over all epochs). */
  step: number;
}

/** Everything needed to continue exactly; plain JSON. */
export interface BatcherState {
  version: 1;
  numTokens: number;
  batchSize: number;
  seqLen: number;
  seed: number;
  shuffle: boolean;
  epoch: number;
  /** Batches of the current epoch already produced. */
  batchInEpoch: number;
  step: number;
  /** xoroshiro128+ state at the start of the current epoch (before its offset and permutation). */
  epochRng: number[];
}

/** A safe-integer seed folded to the 32 bits pure-rand takes (seeds in [0, 2^32) map to themselves). */
export function seed32(seed: number): number {
  if (!Number.isSafeInteger(seed)) throw new DataError(`seed must be a safe integer, got ${JSON.stringify(seed)}`);
  const hi = Math.floor(seed / 4294967296);
  return (Math.imul(hi, 0x9e3779b1) ^ (seed >>> 0)) | 0;
}

export class Batcher implements Iterable<Batch> {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly numTokens: number;
  /** Windows of seqLen + 1 tokens in one epoch. */
  readonly windowsPerEpoch: number;
  readonly batchesPerEpoch: number;
  private readonly source: TokenSource;
  private readonly slack: number;
  private epochIndex = 0;
  private batchInEpoch = 0;
  private stepIndex = 0;
  private epochRng: RandomGenerator;
  private afterEpochRng: RandomGenerator | undefined;
  private offset = 0;
  private order: Uint32Array | null = null; // null: identity order (no shuffle)
  private readonly row: Int32Array;

  constructor(tokens: TokenInput, options: BatcherOptions) {
    this.source = toTokenSource(tokens);
    this.batchSize = checkPositiveInt(options?.batchSize, 'batchSize');
    this.seqLen = checkPositiveInt(options.seqLen, 'seqLen');
    this.seed = options.seed ?? 0;
    this.shuffle = options.shuffle ?? true;
    this.numTokens = this.source.numTokens;
    this.windowsPerEpoch = this.numTokens > 1 ? Math.floor((this.numTokens - 1) / this.seqLen) : 0;
    this.batchesPerEpoch = Math.floor(this.windowsPerEpoch / this.batchSize);
    if (this.batchesPerEpoch === 0) {
      throw new DataError(
        `corpus too small for one batch: ${this.numTokens} tokens give ${this.windowsPerEpoch} windows of seqLen + 1 = ${this.seqLen + 1} ` +
          `tokens, batchSize ${this.batchSize} needs at least ${this.batchSize * this.seqLen + 1} tokens`,
        { file: this.source.label },
      );
    }
    this.slack = this.numTokens - 1 - this.windowsPerEpoch * this.seqLen;
    this.epochRng = xoroshiro128plus(seed32(this.seed));
    this.row = new Int32Array(this.seqLen + 1);
    this.startEpoch();
  }

  /** A batcher that continues exactly where the one that produced `state` was. */
  static resume(tokens: TokenInput, options: BatcherOptions, state: BatcherState): Batcher {
    const batcher = new Batcher(tokens, options);
    const expect = {
      version: 1,
      numTokens: batcher.numTokens,
      batchSize: batcher.batchSize,
      seqLen: batcher.seqLen,
      seed: batcher.seed,
      shuffle: batcher.shuffle,
    };
    for (const [key, value] of Object.entries(expect)) {
      const saved = (state as unknown as Record<string, unknown>)?.[key];
      if (saved !== value) {
        throw new DataError(
          `cannot resume: the state was saved with ${key} = ${JSON.stringify(saved)}, this batcher has ${JSON.stringify(value)}`,
          { file: batcher.source.label },
        );
      }
    }
    const okInt = (v: unknown, max: number): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
    if (
      !okInt(state.epoch, Number.MAX_SAFE_INTEGER) ||
      !okInt(state.step, Number.MAX_SAFE_INTEGER) ||
      !okInt(state.batchInEpoch, batcher.batchesPerEpoch) ||
      !Array.isArray(state.epochRng) ||
      state.epochRng.length !== 4 ||
      !state.epochRng.every((v) => Number.isInteger(v))
    ) {
      throw new DataError(`cannot resume: malformed batcher state ${JSON.stringify(state).slice(0, 200)}`);
    }
    batcher.epochIndex = state.epoch;
    batcher.batchInEpoch = state.batchInEpoch;
    batcher.stepIndex = state.step;
    batcher.epochRng = xoroshiro128plusFromState(state.epochRng);
    batcher.startEpoch();
    return batcher;
  }

  get epoch(): number {
    return this.epochIndex;
  }

  get step(): number {
    return this.stepIndex;
  }

  /** Where the next batch comes from, as plain JSON (save it with a checkpoint). */
  state(): BatcherState {
    return {
      version: 1,
      numTokens: this.numTokens,
      batchSize: this.batchSize,
      seqLen: this.seqLen,
      seed: this.seed,
      shuffle: this.shuffle,
      epoch: this.epochIndex,
      batchInEpoch: this.batchInEpoch,
      step: this.stepIndex,
      epochRng: [...this.epochRng.getState()],
    };
  }

  /** First token of window `w` of the current epoch, for inspection and tests. */
  windowStart(w: number): number {
    return this.offset + w * this.seqLen;
  }

  /** The window index at position `i` of the current epoch's visiting order. */
  windowAt(i: number): number {
    return this.order === null ? i : this.order[i]!;
  }

  next(): Batch {
    if (this.batchInEpoch === this.batchesPerEpoch) {
      this.epochIndex++;
      this.batchInEpoch = 0;
      this.epochRng = this.afterEpochRng!;
      this.startEpoch();
    }
    const { batchSize: B, seqLen: S } = this;
    const inputs = new Int32Array(B * S);
    const targets = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      const w = this.windowAt(this.batchInEpoch * B + b);
      this.source.read(this.windowStart(w), S + 1, this.row, 0);
      inputs.set(this.row.subarray(0, S), b * S);
      targets.set(this.row.subarray(1), b * S);
    }
    const batch: Batch = { inputs, targets, batchSize: B, seqLen: S, epoch: this.epochIndex, step: this.stepIndex };
    this.batchInEpoch++;
    this.stepIndex++;
    return batch;
  }

  *[Symbol.iterator](): Iterator<Batch> {
    for (;;) yield this.next();
  }

  // Draws the epoch's offset and order from a copy of epochRng; the copy's final state seeds the next epoch.
  private startEpoch(): void {
    const rng = this.epochRng.clone();
    if (!this.shuffle) {
      this.offset = 0;
      this.order = null;
    } else {
      this.offset = this.slack > 0 ? uniformInt(rng, 0, this.slack) : 0;
      const W = this.windowsPerEpoch;
      const order = this.order ?? new Uint32Array(W);
      for (let i = 0; i < W; i++) order[i] = i;
      for (let i = W - 1; i > 0; i--) {
        const j = uniformInt(rng, 0, i);
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
      this.order = order;
    }
    this.afterEpochRng = rng;
  }
}
