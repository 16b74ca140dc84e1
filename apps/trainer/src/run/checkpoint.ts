// A training checkpoint: model state (dense weights, norm statistics, sparse tables and their
// optimizer state, RNG streams: whatever the model's stateEntries hold), the AdamW moments, and the
// trainer's own position (step, tokens, batcher, timing) in the manifest metadata. Written by
// @peer/expert-store's saveCheckpoint: atomic (the previous checkpoint stays until the new one is
// complete) and checksummed (a corrupt shard is refused on load).
import { createHash } from 'node:crypto';
import { CheckpointError, loadCheckpoint, saveCheckpoint, type NamedArray } from '@peer/expert-store';
import type { BatcherState } from '@peer/data';
import { UsageError } from '../errors.js';
import type { JsonObject } from '../config/overrides.js';

export const TRAINER_STATE_KEY = 'peer-trainer';

/** Everything besides tensors that a resumed run needs to continue exactly. */
export interface TrainerState {
  version: 1;
  /** Optimizer steps completed. */
  step: number;
  /** Training tokens consumed. */
  tokens: number;
  /** The training batcher's position. */
  batcher: BatcherState;
  /** Seconds in training steps so far (all processes of this run): tokens/s of summary.json. */
  trainSeconds: number;
  /** Wall seconds of the training loop so far (steps, evals, checkpoints; all processes). */
  wallSeconds: number;
  /** sha256 of the config the run was started with: a checkpoint of another config is refused. */
  configHash: string;
}

/** A stable hash of a config (keys sorted at every level). */
export function configHash(config: JsonObject): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v as object)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return `sha256:${createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex')}`;
}

export function writeCheckpoint(dir: string, arrays: readonly NamedArray[], state: TrainerState): void {
  saveCheckpoint(dir, arrays, { metadata: { [TRAINER_STATE_KEY]: JSON.stringify(state) } });
}

export interface LoadedCheckpoint {
  state: TrainerState;
  get(name: string): NamedArray | undefined;
  names: readonly string[];
}

/**
 * Reads and verifies the checkpoint in `dir`. A missing, truncated or corrupt checkpoint, or one
 * written for another config (`expectedHash`), is a UsageError (exit 2) naming the file.
 */
export function readCheckpoint(dir: string, expectedHash: string | undefined): LoadedCheckpoint {
  let ckpt;
  try {
    ckpt = loadCheckpoint(dir, { verify: true });
  } catch (err) {
    if (err instanceof CheckpointError) throw new UsageError(`cannot use the checkpoint: ${err.message}`);
    throw err;
  }
  const raw = ckpt.manifest.metadata[TRAINER_STATE_KEY];
  let state: TrainerState;
  try {
    state = JSON.parse(String(raw)) as TrainerState;
  } catch {
    throw new UsageError(`cannot use the checkpoint: ${dir} has no trainer state (not written by peer-train train)`);
  }
  if (state?.version !== 1 || !Number.isInteger(state.step) || typeof state.configHash !== 'string') {
    throw new UsageError(`cannot use the checkpoint: ${dir} has a malformed trainer state`);
  }
  if (expectedHash !== undefined && state.configHash !== expectedHash) {
    throw new UsageError(`the checkpoint in ${dir} was written by a different config than this run's config.json; refusing to resume`);
  }
  return { state, get: (name) => ckpt.get(name), names: ckpt.names };
}
