import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import type { MetricsRecord } from '../run/run-folder.js';
import { ExpertHealthMonitor, formatHealth, healthRecords, layerHealth } from './expert-health.js';
import { trainLoop } from './train-loop.js';
import { disposeTrainSetups, loopOptions, quietProgress, trainSetup, type TrainSetup } from './train-loop.test-util.js';

afterEach(disposeTrainSetups);

// A fixed seed: the tests compare runs of two set-ups that must see the same tokens.
const setup = (sets: string[] = [], ffw?: string) => trainSetup(sets, { ffw, seed: 7 });

describe('layerHealth', () => {
  it('counts dead experts and retrievals from the hits, and passes usage, KL and head overlap through', () => {
    const r = testRng();
    const n = 500;
    const hits = Float64Array.from({ length: n }, () => (r.float() < 0.3 ? 0 : r.int(20)));
    const weights = hits.map((h) => h * r.float());
    const h = layerHealth(3, 'peer', { count: n, usage: 0.25, unevenness: 0.5, top1PercentShare: 0.1, weights, hits, headOverlap: 0.125 });
    let dead = 0;
    let total = 0;
    for (const x of hits) {
      if (x === 0) dead++;
      total += x;
    }
    expect(h).toEqual({ block: 3, kind: 'peer', experts: n, usage: 0.25, unevenness: 0.5, dead, headOverlap: 0.125, retrievals: total });
    const single = layerHealth(0, 'moe', { count: 2, usage: 0, unevenness: NaN, top1PercentShare: NaN, weights: new Float64Array(2), hits: new Float64Array(2) });
    expect(single.headOverlap).toBeUndefined();
    const records = healthRecords({ sinceStep: 10, step: 20, layers: [h, single] }, 999);
    expect(records[0]).toEqual({ kind: 'health', step: 20, tokens: 999, since_step: 10, block: 3, layer: 'peer', experts: n, usage: 0.25, unevenness: 0.5, dead, head_overlap: 0.125, retrievals: total });
    expect(records[1]).toMatchObject({ unevenness: null, dead: 2 });
    expect(records[1]).not.toHaveProperty('head_overlap');
    expect(formatHealth({ sinceStep: 10, step: 20, layers: [single] })).toEqual(['experts block 0 (moe, 2): usage 0.0% | KL n/a | dead 2 (steps 11-20)']);
  });
});

describe('expert health in the training loop', () => {
  it('does not change the training numbers: losses, gradient norms and every weight are bit-identical with it on', async () => {
    const plain = setup(['train.evalEvery=3']);
    const watched = setup(['train.evalEvery=3']);
    const a: MetricsRecord[] = [];
    const b: MetricsRecord[] = [];
    await trainLoop(loopOptions(plain, { totalSteps: 7, writeMetrics: (m) => a.push(m) }));
    await trainLoop(loopOptions(watched, { totalSteps: 7, writeMetrics: (m) => b.push(m), health: new ExpertHealthMonitor(watched.model) }));
    const numbers = (ms: MetricsRecord[]) => ms.filter((m) => m.kind === 'train').map(({ loss, grad_norm, aux_loss }) => [loss, grad_norm, aux_loss]);
    expect(numbers(b)).toEqual(numbers(a));
    expect(b.filter((m) => m.kind === 'health').map((m) => m.step)).toEqual([3, 6]);
    const state = (s: TrainSetup) => s.model.stateEntries().map((e) => [e.name, Array.from(e.data as ArrayLike<number>)]);
    expect(state(watched)).toEqual(state(plain));
  });

  it('counts exactly the training retrievals since the last evaluation (not the evaluation passes)', async () => {
    const s = setup(['train.evalEvery=4', 'train.logEvery=100']);
    const metrics: MetricsRecord[] = [];
    const lines: string[] = [];
    const monitor = new ExpertHealthMonitor(s.model);
    // a real evaluation pass in between: its forward passes must not be recorded
    const evaluate = () => {
      tf.tidy(() => {
        s.model.loss(tf.zeros([4, 32], 'int32'), tf.zeros([4, 32], 'int32'), { training: false });
      });
      return { loss: 1, perplexity: Math.E, bitsPerByte: 1, tokens: 1, bytes: 1, batches: 1 };
    };
    await trainLoop(loopOptions(s, { totalSteps: 10, evaluate, health: monitor, writeMetrics: (m) => metrics.push(m), progress: { ...quietProgress, log: (l) => lines.push(l) } }));
    const last = monitor.collect(10)!;
    const health = metrics.filter((m) => m.kind === 'health');
    expect(health.map((m) => [m.step, m.since_step])).toEqual([[4, 0], [8, 4]]);
    // tiny preset: PEER in block 1, 256 experts, 2 heads x top-4, batch 4 x 32 tokens
    const perStep = 4 * 32 * 2 * 4;
    expect(health.map((m) => m.retrievals)).toEqual([4 * perStep, 4 * perStep]);
    expect(last).toMatchObject({ sinceStep: 8, step: 10, layers: [{ block: 1, kind: 'peer', experts: 256, retrievals: 2 * perStep }] });
    for (const m of health) {
      expect(m).toMatchObject({ block: 1, layer: 'peer', experts: 256 });
      const usage = m.usage as number;
      // usage and dead experts agree (softmax weights are positive), KL in [0, log N], overlap in [0, 1]
      expect(m.dead).toBe(256 - Math.round(usage * 256));
      expect(m.unevenness as number).toBeGreaterThanOrEqual(0);
      expect(m.unevenness as number).toBeLessThanOrEqual(Math.log(256));
      expect(m.head_overlap as number).toBeGreaterThanOrEqual(0);
      expect(m.head_overlap as number).toBeLessThanOrEqual(1);
    }
    expect(lines.filter((l) => l.startsWith('experts block 1 (peer, 256): usage '))).toHaveLength(2);
    expect(monitor.collect(11)).toBeUndefined();
  });

  it('keeps the number of live tensors constant with health on', async () => {
    const s = setup();
    const monitor = new ExpertHealthMonitor(s.model);
    let position = { step: 0, tokens: 0, trainSeconds: 0, wallSeconds: 0 };
    await expectNoLeaks(
      async () => {
        const out = await trainLoop(loopOptions(s, { totalSteps: position.step + 1, start: position, health: monitor }));
        position = out.position;
        monitor.collect(position.step);
      },
      { warmup: 2, repeats: 3, label: 'train step with expert health' },
    );
  });

  it('reports PKM (with head overlap) and MoE (one router, no overlap) layers too', async () => {
    for (const [ffw, sets, experts, perStep] of [
      ['pkm', ['model.ffw.options.memories=256', 'model.ffw.options.heads=2', 'model.ffw.options.topK=4'], 256, 4 * 32 * 2 * 4],
      ['moe', ['model.ffw.options.experts=4', 'model.ffw.options.topK=1'], 4, undefined],
    ] as const) {
      const s = setup(['train.evalEvery=2', ...sets], ffw);
      const metrics: MetricsRecord[] = [];
      await trainLoop(loopOptions(s, { totalSteps: 3, health: new ExpertHealthMonitor(s.model), writeMetrics: (m) => metrics.push(m) }));
      const [h, ...rest] = metrics.filter((m) => m.kind === 'health');
      expect(rest).toEqual([]);
      expect(h).toMatchObject({ step: 2, since_step: 0, block: 1, layer: ffw, experts });
      if (perStep !== undefined) {
        expect(h!.retrievals).toBe(2 * perStep);
        expect(typeof h!.head_overlap).toBe('number');
      } else {
        expect(h).not.toHaveProperty('head_overlap');
        expect(h!.retrievals as number).toBeGreaterThan(0);
      }
      expect(h!.dead).toBe(experts - Math.round((h!.usage as number) * experts));
    }
  });

  it('reports nothing for a dense model', async () => {
    const s = setup([], 'dense');
    const monitor = new ExpertHealthMonitor(s.model);
    expect(monitor.hasSparseLayers).toBe(false);
    const metrics: MetricsRecord[] = [];
    await trainLoop(loopOptions(s, { totalSteps: 4, health: monitor, writeMetrics: (m) => metrics.push(m), config: { ...s.config, train: { ...s.config.train, evalEvery: 2 } } }));
    expect(metrics.filter((m) => m.kind === 'health')).toEqual([]);
    expect(monitor.collect(4)).toBeUndefined();
  });
});
