// A tiny model, its optimizer and a batcher of random bytes for tests of the training loop, and the
// loop's options around them (no progress output, no evaluation, no checkpoint, no metrics file).
// Every set-up is disposed by `disposeTrainSetups` (each test file's afterEach).
import { Batcher } from '@peer/data';
import { testRng } from '@peer/test-utils';
import { resolveConfig } from '../config/resolve.js';
import { buildModel } from '../run/build-model.js';
import { AdamW } from './adamw.js';
import type { TrainLoopOptions } from './train-loop.js';

export const quietProgress = { update() {}, log() {}, stop() {} };

export interface TrainSetupOptions {
  /** The `--ffw` flag (default: the preset's layer). */
  ffw?: string;
  /** Seed of the batcher's random tokens (default: testRng's, PEER_TEST_SEED or fresh). */
  seed?: number;
}

export interface TrainSetup {
  config: ReturnType<typeof resolveConfig>['config'];
  model: ReturnType<typeof buildModel>;
  optimizer: AdamW;
  batcher: Batcher;
}

let live: TrainSetup[] = [];

/** The 'tiny' preset with `sets` (`path=value`), built and registered for `disposeTrainSetups`. */
export function trainSetup(sets: string[] = [], options: TrainSetupOptions = {}): TrainSetup {
  const { config } = resolveConfig({ preset: 'tiny', sets, flags: { ffw: options.ffw } });
  const model = buildModel(config);
  const optimizer = new AdamW(model.trainableVariables(), config.optim);
  const r = testRng(options.seed);
  const tokens = Int32Array.from({ length: 4000 }, () => r.int(256));
  const batcher = new Batcher(tokens, { batchSize: config.data.batchSize, seqLen: config.data.seqLen, seed: 1 });
  const setup = { config, model, optimizer, batcher };
  live.push(setup);
  return setup;
}

/** Disposes every set-up made since the last call. */
export function disposeTrainSetups(): void {
  for (const s of live) {
    s.optimizer.dispose();
    s.model.dispose();
  }
  live = [];
}

/** The loop's options for `s` from step 0, with `overrides`. */
export function loopOptions(s: TrainSetup, overrides: Partial<TrainLoopOptions> & { totalSteps: number }): TrainLoopOptions {
  return {
    model: s.model,
    optimizer: s.optimizer,
    batcher: s.batcher,
    config: s.config,
    start: { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 },
    flopsPerStep: 1,
    peakFlopsPerSecond: undefined,
    progress: quietProgress,
    evaluate: () => ({ loss: 1, perplexity: Math.E, bitsPerByte: 1, tokens: 1, bytes: 1, batches: 1 }),
    checkpoint: () => {},
    writeMetrics: () => {},
    stopRequested: () => false,
    ...overrides,
  };
}
