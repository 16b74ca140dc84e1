// PKM and the two MoE layers inside tf.layers models: model.fit trains them (the PKM value table by
// the sparse-step callback), file:// save and load keep the outputs bit for bit with every piece of
// state, gradients through the wrapper equal the plain layer's, the MoE auxiliary loss reaches
// model.fit's loss, and fit steps leak no tensor.
//
// Axes: B batch, S sequence, D model width.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import type { RowSparseGrad } from '@peer/expert-store';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { MoeTokenChoice } from './moe-token-choice.js';
import { ProductKeyMemory } from './pkm.js';
import { moe, moeExpertChoice, pkm, sparseStep, sparseStepCallback, type FeedForwardTfLayer, type MoeExpertChoiceTfLayerConfig, type MoeTfLayerConfig } from './tf-layers.js';

const DIM = 8;
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function randomTensor(rng: TestRng, shape: number[], std = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from(rng.normals(n, std)), shape);
}

interface Kind {
  kind: string;
  config: (seed: number) => Record<string, unknown>;
  tfLayer: (config: Record<string, unknown>) => FeedForwardTfLayer;
  plain: (config: Record<string, unknown>) => FeedForwardLayer;
  /** Whether backward accumulates row gradients (a sparse table). */
  sparse: boolean;
}

const KINDS: Kind[] = [
  {
    kind: 'pkm',
    config: (seed) => ({ memories: 64, heads: 2, topK: 4, dimKey: 4, valueOptimizer: { lr: 1e-2 }, seed }),
    tfLayer: (c) => pkm(c),
    plain: (c) => new ProductKeyMemory(c as ConstructorParameters<typeof ProductKeyMemory>[0]),
    sparse: true,
  },
  {
    kind: 'moe',
    config: (seed) => ({ experts: 4, hidden: 6, topK: 2, auxLossCoef: 0.5, zLossCoef: 0.01, seed }),
    tfLayer: (c) => moe(c as unknown as MoeTfLayerConfig),
    plain: (c) => new MoeTokenChoice(c as ConstructorParameters<typeof MoeTokenChoice>[0]),
    sparse: false,
  },
  {
    kind: 'moe-ec',
    config: (seed) => ({ experts: 4, hidden: 6, zLossCoef: 0.1, seed }),
    tfLayer: (c) => moeExpertChoice(c as unknown as MoeExpertChoiceTfLayerConfig),
    plain: (c) => new MoeExpertChoice(c as ConstructorParameters<typeof MoeExpertChoice>[0]),
    sparse: false,
  },
];

function regressionModel(k: Kind, seed: number): tf.Sequential {
  const model = tf.sequential({
    layers: [k.tfLayer({ ...k.config(seed), inputShape: [4, DIM] }), tf.layers.dense({ units: 1, kernelInitializer: tf.initializers.glorotUniform({ seed }) })],
  });
  model.compile({ optimizer: tf.train.adam(1e-2), loss: 'meanSquaredError' });
  return model;
}

describe.each(KINDS)('$kind as a tf.layers layer', (k) => {
  it('trains with model.fit, then file:// save and load give identical outputs and state', async () => {
    const rng = testRng();
    const model = regressionModel(k, rng.int(1000));
    const xs = randomTensor(rng, [32, 4, DIM]);
    const ys = randomTensor(rng, [32, 4, 1]);
    const layer = model.layers[0] as FeedForwardTfLayer;
    const before = layer.stateEntries().map((e) => e.data.slice());
    const history = await model.fit(xs, ys, { epochs: 3, batchSize: 8, verbose: 0, callbacks: [sparseStepCallback(model)] });
    const losses = history.history.loss as number[];
    expect(losses[2]!, `seed ${rng.seed}`).toBeLessThan(losses[0]!);
    // Every kind's state moved (the PKM value table through the callback's sparse step).
    const after = layer.stateEntries();
    const table = after.find((e) => e.name === (k.sparse ? 'values' : 'router.weight'))!;
    expect(table.data).not.toEqual(before[after.indexOf(table)]);

    const dir = mkdtempSync(join(tmpdir(), `tf-layers-${k.kind}-`));
    dirs.push(dir);
    await model.save(`file://${dir}`);
    expect(readdirSync(dir).filter((f) => f.endsWith('.safetensors')).length).toBe(1);
    const loaded = await tf.loadLayersModel(`file://${dir}`);
    expect(loaded.layers[0]!.getClassName()).toBe(layer.getClassName());
    const expected = tf.tidy(() => model.predict(xs) as tf.Tensor);
    const actual = tf.tidy(() => loaded.predict(xs) as tf.Tensor);
    expect(actual.dataSync()).toEqual(expected.dataSync());
    const restored = new Map((loaded.layers[0] as FeedForwardTfLayer).stateEntries().map((e) => [e.name, e]));
    for (const e of layer.stateEntries()) expect(restored.get(e.name)?.data, e.name).toEqual(e.data);
    tf.dispose([xs, ys, expected, actual]);
    model.dispose();
    loaded.dispose();
  });

  it('gradients through the wrapper equal the plain layer\'s; model.fit\'s loss includes the auxiliary loss', () => {
    const rng = testRng();
    const config = { ...k.config(rng.int(1000)), dim: DIM };
    const plain = k.plain(config);
    const wrapped = k.tfLayer(config);
    const input = tf.input({ shape: [5, DIM] });
    const model = tf.model({ inputs: input, outputs: wrapped.apply(input) as tf.SymbolicTensor });
    const x = randomTensor(rng, [3, 5, DIM]);
    const r = randomTensor(rng, [3, 5, DIM]);
    // The objective model.fit differentiates: the output's loss plus the layer losses (aux loss).
    const viaModel = tf.variableGrads(() => {
      const y = model.apply(x, { training: true }) as tf.Tensor;
      return tf.addN([tf.sum(tf.mul(y, r)), ...model.calculateLosses()]) as tf.Scalar;
    }, model.trainableWeights.map((w) => w.read() as tf.Variable));
    let plainAux = 0;
    const viaPlain = tf.variableGrads(() => {
      const out = plain.apply(x as tf.Tensor3D, { training: true });
      if (out.auxLoss) plainAux = out.auxLoss.dataSync()[0]!;
      return (out.auxLoss ? tf.add(tf.sum(tf.mul(out.y, r)), out.auxLoss) : tf.sum(tf.mul(out.y, r))) as tf.Scalar;
    }, plain.trainableVariables());
    if (!k.sparse) expect(plainAux).toBeGreaterThan(0);
    expect(viaModel.value.dataSync()[0]).toBe(viaPlain.value.dataSync()[0]);
    const wrappedVars = wrapped.layer.trainableVariables();
    const plainVars = plain.trainableVariables();
    expect(model.trainableWeights.map((w) => w.read())).toEqual(wrappedVars);
    for (let i = 0; i < plainVars.length; i++) {
      expect(viaModel.grads[wrappedVars[i]!.name]!.dataSync(), `variable ${i}`).toEqual(viaPlain.grads[plainVars[i]!.name]!.dataSync());
    }
    if (k.sparse) {
      const a = (wrapped.layer as ProductKeyMemory).valueGrad as RowSparseGrad;
      const b = (plain as ProductKeyMemory).valueGrad as RowSparseGrad;
      expect(a.size).toBeGreaterThan(0);
      expect(a.uniqueRows()).toEqual(b.uniqueRows());
      expect(a.rowGrads()).toEqual(b.rowGrads());
      sparseStep(model);
      expect(a.size).toBe(0);
    }
    tf.dispose([x, r, viaModel.value, viaPlain.value, ...Object.values(viaModel.grads), ...Object.values(viaPlain.grads)]);
    plain.dispose();
    model.dispose();
  });

  it('a model.fit epoch leaks no tensor', async () => {
    const rng = testRng();
    const model = regressionModel(k, rng.int(1000));
    const xs = randomTensor(rng, [16, 4, DIM]);
    const ys = randomTensor(rng, [16, 4, 1]);
    const callback = sparseStepCallback(model);
    await expectNoLeaks(() => model.fit(xs, ys, { epochs: 1, batchSize: 8, verbose: 0, callbacks: [callback] }), { warmup: 1, repeats: 2, label: `${k.kind} model.fit` });
    tf.dispose([xs, ys]);
    model.dispose();
  });
});
