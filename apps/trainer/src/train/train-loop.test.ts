import * as tf from '@tensorflow/tfjs-core';
import { Batcher } from '@peer/data';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../config/resolve.js';
import { buildModel } from '../run/build-model.js';
import type { MetricsRecord } from '../run/run-folder.js';
import { AdamW } from './adamw.js';
import type { LanguageModel } from './language-model.js';
import { trainLoop, type LoopPosition, type TrainLoopOptions } from './train-loop.js';

const quiet = { update() {}, log() {}, stop() {} };

function setup(sets: string[] = []) {
  const { config } = resolveConfig({ preset: 'tiny', sets });
  const model = buildModel(config);
  const optimizer = new AdamW(model.trainableVariables(), config.optim);
  const r = testRng();
  const tokens = Int32Array.from({ length: 4000 }, () => r.int(256));
  const batcher = new Batcher(tokens, { batchSize: config.data.batchSize, seqLen: config.data.seqLen, seed: 1 });
  return { config, model, optimizer, batcher };
}

type Setup = ReturnType<typeof setup>;
let live: Setup[] = [];
afterEach(() => {
  for (const s of live) {
    s.optimizer.dispose();
    s.model.dispose();
  }
  live = [];
});

function options(s: Setup, overrides: Partial<TrainLoopOptions> & { totalSteps: number }): TrainLoopOptions {
  return {
    model: s.model,
    optimizer: s.optimizer,
    batcher: s.batcher,
    config: s.config,
    start: { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 },
    flopsPerStep: 1,
    peakFlopsPerSecond: undefined,
    progress: quiet,
    evaluate: () => ({ loss: 1, perplexity: Math.E, bitsPerByte: 1, tokens: 1, bytes: 1, batches: 1 }),
    checkpoint: () => {},
    writeMetrics: () => {},
    stopRequested: () => false,
    ...overrides,
  };
}

const snapshot = (vars: tf.Variable[]) => vars.map((v) => Array.from(v.dataSync()));

describe('trainLoop', () => {
  it('keeps the number of live tensors constant from step to step', async () => {
    const s = setup();
    live.push(s);
    let position: LoopPosition = { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 };
    await expectNoLeaks(
      async () => {
        const out = await trainLoop(options(s, { totalSteps: position.step + 1, start: position }));
        position = out.position;
      },
      { warmup: 2, repeats: 3, label: 'train step' },
    );
    expect(position.step).toBe(5);
    expect(s.optimizer.step).toBe(5);
  });

  it('logs, evaluates and checkpoints on their schedules, and every weight moves', async () => {
    const s = setup(['train.logEvery=2', 'train.evalEvery=3', 'train.checkpointEvery=4']);
    live.push(s);
    const before = snapshot(s.model.trainableVariables());
    const table = () => Array.from(s.model.stateEntries().find((e) => e.name === 'blocks.1.ffw.weight_up_embed.weight')!.data as Float32Array);
    const tableBefore = table();
    const metrics: MetricsRecord[] = [];
    const checkpoints: number[] = [];
    const out = await trainLoop(
      options(s, { totalSteps: 8, writeMetrics: (m) => metrics.push(m), checkpoint: (p) => checkpoints.push(p.step) }),
    );
    expect(out.kind).toBe('completed');
    expect(out.position).toMatchObject({ step: 8, tokens: 8 * 4 * 32 });
    expect(metrics.filter((m) => m.kind === 'train').map((m) => m.step)).toEqual([2, 4, 6, 8]);
    // the last step's evaluation is the caller's final one
    expect(metrics.filter((m) => m.kind === 'eval').map((m) => m.step)).toEqual([3, 6]);
    expect(checkpoints).toEqual([4, 8]);
    const train = metrics.find((m) => m.kind === 'train')!;
    expect(Object.keys(train).sort()).toEqual(
      ['aux_loss', 'grad_norm', 'kind', 'loss', 'lr', 'mfu', 'step', 'tokens', 'tokens_per_s', 'train_seconds'].sort(),
    );
    expect(train.loss as number).toBeGreaterThan(0);
    expect(train.grad_norm as number).toBeGreaterThan(0);
    const after = snapshot(s.model.trainableVariables());
    after.forEach((w, i) => expect(w).not.toEqual(before[i]));
    // the PEER expert table (held outside tfjs) is updated by the sparse step
    const tableAfter = table();
    const rowsMoved = Array.from({ length: 256 }, (_, r) => tableAfter.slice(32 * r, 32 * r + 32).some((x, j) => x !== tableBefore[32 * r + j])).filter(Boolean).length;
    expect(rowsMoved).toBeGreaterThan(0);
  });

  it('stops on a non-finite loss without updating anything and drops the sparse gradients', async () => {
    const s = setup();
    live.push(s);
    await trainLoop(options(s, { totalSteps: 2 }));
    const before = snapshot(s.model.trainableVariables());
    let zeroed = 0;
    const poisoned: LanguageModel = {
      loss: (x, y, mode) => {
        const out = s.model.loss(x, y, mode);
        return { ...out, loss: tf.mul(out.loss, NaN) as tf.Scalar };
      },
      trainableVariables: () => s.model.trainableVariables(),
      sparseStep: (f) => s.model.sparseStep(f),
      zeroSparseGrads: () => {
        zeroed++;
        s.model.zeroSparseGrads();
      },
      flopsPerToken: () => s.model.flopsPerToken(),
      stateEntries: () => s.model.stateEntries(),
      loadStateEntries: (g) => s.model.loadStateEntries(g),
    };
    const checkpoints: number[] = [];
    const tensors = tf.memory().numTensors;
    const out = await trainLoop(
      options(s, { model: poisoned, totalSteps: 5, start: { step: 2, tokens: 256, trainSeconds: 0, wallSeconds: 0 }, checkpoint: (p) => checkpoints.push(p.step) }),
    );
    expect(out).toMatchObject({ kind: 'non-finite', what: 'loss', position: { step: 2 } });
    expect(Number.isNaN((out as { value: number }).value)).toBe(true);
    expect(zeroed).toBe(1);
    expect(checkpoints).toEqual([]);
    expect(s.optimizer.step).toBe(2);
    expect(snapshot(s.model.trainableVariables())).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('finishes the step, checkpoints and returns when asked to stop', async () => {
    const s = setup();
    live.push(s);
    let steps = 0;
    const checkpoints: number[] = [];
    const out = await trainLoop(
      options(s, {
        totalSteps: 20,
        progress: { ...quiet, update: () => void steps++ },
        stopRequested: () => steps >= 3,
        checkpoint: (p) => checkpoints.push(p.step),
      }),
    );
    expect(out).toMatchObject({ kind: 'interrupted', position: { step: 3 } });
    expect(checkpoints).toEqual([3]);
  });
});

