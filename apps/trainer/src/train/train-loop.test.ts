import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks } from '@peer/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import type { MetricsRecord } from '../run/run-folder.js';
import type { LanguageModel } from './language-model.js';
import { trainLoop, type LoopPosition } from './train-loop.js';
import { disposeTrainSetups, loopOptions, quietProgress, trainSetup } from './train-loop.test-util.js';

afterEach(disposeTrainSetups);

const snapshot = (vars: tf.Variable[]) => vars.map((v) => Array.from(v.dataSync()));

describe('trainLoop', () => {
  it('keeps the number of live tensors constant from step to step', async () => {
    const s = trainSetup();
    let position: LoopPosition = { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 };
    await expectNoLeaks(
      async () => {
        const out = await trainLoop(loopOptions(s, { totalSteps: position.step + 1, start: position }));
        position = out.position;
      },
      { warmup: 2, repeats: 3, label: 'train step' },
    );
    expect(position.step).toBe(5);
    expect(s.optimizer.step).toBe(5);
  });

  it('logs, evaluates and checkpoints on their schedules, and every weight moves', async () => {
    const s = trainSetup(['train.logEvery=2', 'train.evalEvery=3', 'train.checkpointEvery=4']);
    const before = snapshot(s.model.trainableVariables());
    const table = () => Array.from(s.model.stateEntries().find((e) => e.name === 'blocks.1.ffw.weight_up_embed.weight')!.data as Float32Array);
    const tableBefore = table();
    const metrics: MetricsRecord[] = [];
    const checkpoints: number[] = [];
    const out = await trainLoop(
      loopOptions(s, { totalSteps: 8, writeMetrics: (m) => metrics.push(m), checkpoint: (p) => checkpoints.push(p.step) }),
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
    const s = trainSetup();
    await trainLoop(loopOptions(s, { totalSteps: 2 }));
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
      loopOptions(s, { model: poisoned, totalSteps: 5, start: { step: 2, tokens: 256, trainSeconds: 0, wallSeconds: 0 }, checkpoint: (p) => checkpoints.push(p.step) }),
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
    const s = trainSetup();
    let steps = 0;
    const checkpoints: number[] = [];
    const out = await trainLoop(
      loopOptions(s, {
        totalSteps: 20,
        progress: { ...quietProgress, update: () => void steps++ },
        stopRequested: () => steps >= 3,
        checkpoint: (p) => checkpoints.push(p.step),
      }),
    );
    expect(out).toMatchObject({ kind: 'interrupted', position: { step: 3 } });
    expect(checkpoints).toEqual([3]);
  });
});

