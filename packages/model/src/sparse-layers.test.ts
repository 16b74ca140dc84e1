// The model with each default sparse layer in its middle block (integration with @peer/baselines
// and @peer/layer): costs add up, a training step updates dense and sparse state without leaking,
// and the state round-trips. Axes: B batch, S sequence.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { expectNoLeaks } from '@peer/test-utils';
import { attentionFlopsPerToken } from './accounting.js';
import type { ModelConfigInput } from './config.js';
import { TransformerLM } from './transformer.js';

const BASE = { vocabSize: 11, dim: 8, heads: 2, layers: 3, seqLen: 6, ffw: { hidden: 16 } } satisfies ModelConfigInput;

const KINDS = [
  ['moe', { experts: 4, topK: 2, hidden: 8 }],
  ['moe-ec', { experts: 4, hidden: 8 }],
  ['pkm', { memories: 16, heads: 2, topK: 2 }],
  ['peer', { numExperts: 16, heads: 2, topK: 2 }],
] as const;

describe.each(KINDS)('TransformerLM with a %s block', (kind, options) => {
  const config = { ...BASE, ffw: { ...BASE.ffw, kind, options } } satisfies ModelConfigInput;

  it('adds the layer costs to the model costs', () => {
    const model = new TransformerLM(config);
    const ffws = model.feedForwards();
    expect(ffws.map((f) => f.kind)).toEqual(['dense', kind, 'dense']);
    const sparse = ffws[1]!;
    expect(model.flopsPerToken()).toBe(3 * attentionFlopsPerToken(8, 6) + 2 * ffws[0]!.flopsPerToken() + sparse.flopsPerToken() + 2 * 8 * 11);
    const { total, activePerToken } = model.paramCounts();
    expect(total - activePerToken).toBe(sparse.totalParams() - sparse.activeParamsPerToken());
    model.dispose();
  });

  it('trains a step (dense AdamW + sparse step) without leaking, changing the sparse block', async () => {
    const model = new TransformerLM({ ...config, seed: 3 });
    const x = tf.tensor2d([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], [2, 6], 'int32');
    const y = tf.tensor2d([[2, 3, 4, 5, 6, 7], [5, 4, 3, 2, 1, 0]], [2, 6], 'int32');
    const optimizer = tf.train.adam(1e-2);
    const block1 = () => model.feedForwards()[1]!.stateEntries('').map((e) => Array.from(e.data as Float32Array));
    const before = block1();
    let loss = Number.NaN;
    await expectNoLeaks(() => {
      const { value, grads } = tf.variableGrads(() => {
        const out = model.loss(x, y, { training: true });
        return tf.add(out.loss, out.auxLoss) as tf.Scalar;
      }, model.trainableVariables());
      optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
      model.sparseStep(1);
      loss = value.dataSync()[0]!;
      tf.dispose([value, ...Object.values(grads)]);
    });
    expect(Number.isFinite(loss)).toBe(true);
    expect(block1()).not.toEqual(before);
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  });

  it('round-trips its state into a fresh model', () => {
    const a = new TransformerLM({ ...config, seed: 1 });
    const b = new TransformerLM({ ...config, seed: 2 });
    const tokens = tf.tensor2d([[3, 1, 4, 1, 5, 9]], [1, 6], 'int32');
    const entries = new Map(a.stateEntries().map((e) => [e.name, e]));
    expect([...entries.keys()].some((n) => n.startsWith('blocks.1.ffw.'))).toBe(true);
    b.loadStateEntries((n) => entries.get(n));
    const [la, lb] = [a.logits(tokens), b.logits(tokens)];
    expect(Array.from(lb.dataSync())).toEqual(Array.from(la.dataSync()));
    tf.dispose([tokens, la, lb]);
    a.dispose();
    b.dispose();
  });
});
