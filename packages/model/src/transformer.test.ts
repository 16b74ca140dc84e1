// Axes: B batch, S sequence, D width, V vocabulary.
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { expectClose, expectNoLeaks, testRng, type TestRng } from '@peer/test-utils';
import type { NamedArray } from '@peer/expert-store';
import type { ModelConfigInput } from './config.js';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { referenceLogits, referenceLoss, type Weights } from './reference-model.test-util.js';
import { feedForwardFactory, registerFeedForward, unregisterFeedForward } from './registry.js';
import { TransformerLM } from './transformer.js';

const TINY = { vocabSize: 11, dim: 8, heads: 2, layers: 2, seqLen: 6, ffw: { hidden: 16 } } satisfies ModelConfigInput;

/** Loads random values into every float entry so that no weight sits at its initial 0 / 1. */
function randomizeState(model: TransformerLM, rng: TestRng): void {
  const entries = new Map(
    model.stateEntries().map((e): [string, NamedArray] => {
      if (e.dtype !== 'F32') return [e.name, e];
      const isGain = /norm\d?\.weight$|norm_f\.weight$/.test(e.name);
      const data = Float32Array.from(rng.normals(e.data.length, isGain ? 0.2 : 0.4), (v) => (isGain ? 1 + v : v));
      return [e.name, { ...e, data }];
    }),
  );
  model.loadStateEntries((n) => entries.get(n));
}

function weights(model: TransformerLM): Weights {
  return new Map(model.stateEntries().map((e) => [e.name, Float64Array.from(e.data as Float32Array)]));
}

function randomTokens(rng: TestRng, B: number, S: number, V: number): number[][] {
  return Array.from({ length: B }, () => Array.from({ length: S }, () => rng.int(V)));
}

const int2d = (rows: number[][]) => tf.tensor2d(rows, [rows.length, rows[0]!.length], 'int32');

/** Names of every trainable variable, in `trainableVariables()` order (FFW ones from their state entries). */
function variableNames(model: TransformerLM): string[] {
  return [
    ...model.namedVariables().map((n) => n.name),
    ...model.feedForwards().flatMap((f, i) => f.stateEntries(`blocks.${i}.ffw.`).map((e) => e.name)),
  ];
}

const VARIANTS = [
  { positions: 'rope', tieEmbeddings: true, norm: 'layernorm' },
  { positions: 'learned', tieEmbeddings: false, norm: 'rmsnorm' },
  { positions: 'rope', tieEmbeddings: false, norm: 'rmsnorm' },
  { positions: 'learned', tieEmbeddings: true, norm: 'layernorm' },
] as const;

describe('TransformerLM forward', () => {
  it.each(VARIANTS)('matches a float64 reference forward and loss ($positions, tied $tieEmbeddings, $norm)', (variant) => {
    const rng = testRng();
    const model = new TransformerLM({ ...TINY, ...variant, seed: rng.int(1000) });
    randomizeState(model, rng);
    const w = weights(model);
    for (const S of [6, 4]) {
      const inputs = randomTokens(rng, 2, S, 11);
      const targets = randomTokens(rng, 2, S, 11);
      const expected = referenceLogits(model.config, w, inputs);
      const x = int2d(inputs);
      const y = int2d(targets);
      const logits = model.logits(x);
      expect(logits.shape).toEqual([2, S, 11]);
      const flat = expected.flatMap((seq) => seq.flatMap((row) => Array.from(row)));
      expectClose(logits.dataSync(), flat, { rtol: 1e-4, atol: 2e-5, label: `S ${S}, seed ${rng.seed}` });
      const { loss, auxLoss } = model.loss(x, y, { training: true });
      expectClose(loss.dataSync(), [referenceLoss(expected, targets)], { rtol: 1e-5, label: `loss, seed ${rng.seed}` });
      expect(auxLoss.dataSync()[0]).toBe(0);
      tf.dispose([x, y, logits, loss, auxLoss]);
    }
    model.dispose();
  });

  it.each(['rope', 'learned'] as const)('is causal: logits up to t ignore the tokens after t (%s)', (positions) => {
    const rng = testRng();
    const model = new TransformerLM({ ...TINY, positions, seed: rng.int(1000) });
    randomizeState(model, rng);
    const a = randomTokens(rng, 2, 6, 11);
    const t = 2;
    const b = a.map((seq) => seq.map((tok, s) => (s > t ? (tok + 1 + rng.int(10)) % 11 : tok)));
    const [ta, tb] = [int2d(a), int2d(b)];
    const [ya, yb] = [model.logits(ta), model.logits(tb)];
    const la = ya.arraySync() as number[][][];
    const lb = yb.arraySync() as number[][][];
    tf.dispose([ta, tb, ya, yb]);
    for (let seq = 0; seq < 2; seq++) {
      for (let s = 0; s <= t; s++) expectClose(lb[seq]![s]!, la[seq]![s]!, { rtol: 1e-6, atol: 1e-7, label: `position ${s}` });
      // The later positions see the changed tokens.
      expect(Math.max(...lb[seq]![t + 1]!.map((v, i) => Math.abs(v - la[seq]![t + 1]![i]!)))).toBeGreaterThan(1e-3);
    }
    model.dispose();
  });

  it('gives the same logits, loss and gradients with sliced and batched attention', () => {
    const rng = testRng();
    const seed = rng.int(1000);
    const inputs = int2d(randomTokens(rng, 3, 6, 11));
    const targets = int2d(randomTokens(rng, 3, 6, 11));
    const run = (attention: 'sliced' | 'batched') => {
      const model = new TransformerLM({ ...TINY, seed }, { attention });
      const { value, grads } = tf.variableGrads(() => model.loss(inputs, targets, { training: true }).loss, model.trainableVariables());
      const out = {
        loss: value.dataSync()[0]!,
        grads: model.trainableVariables().map((v) => Array.from(grads[v.name]!.dataSync())),
      };
      tf.dispose([value, ...Object.values(grads)]);
      model.dispose();
      return out;
    };
    const sliced = run('sliced');
    const batched = run('batched');
    expectClose([sliced.loss], [batched.loss], { rtol: 1e-6 });
    sliced.grads.forEach((g, i) => expectClose(g, batched.grads[i]!, { rtol: 1e-4, atol: 1e-7, label: `variable ${i}` }));
    tf.dispose([inputs, targets]);
  });

  it('applies dropout in training only, reproducibly from the seed and the saved state', () => {
    const rng = testRng();
    const cfg = { ...TINY, dropout: 0.5, seed: rng.int(1000) };
    const tokens = int2d(randomTokens(rng, 2, 6, 11));
    const a = new TransformerLM(cfg);
    const b = new TransformerLM(cfg);
    const evalA = Array.from(a.logits(tokens).dataSync());
    expect(Array.from(a.logits(tokens, { training: false }).dataSync())).toEqual(evalA);
    const trainA = Array.from(a.logits(tokens, { training: true }).dataSync());
    expect(trainA).not.toEqual(evalA);
    expect(Array.from(b.logits(tokens, { training: true }).dataSync())).toEqual(trainA);
    // The dropout stream continues from a saved state.
    const saved = new Map(a.stateEntries().map((e) => [e.name, e]));
    const nextA = Array.from(a.logits(tokens, { training: true }).dataSync());
    b.loadStateEntries((n) => saved.get(n));
    expect(Array.from(b.logits(tokens, { training: true }).dataSync())).toEqual(nextA);
    tokens.dispose();
    a.dispose();
    b.dispose();
  });

  it('rejects bad tokens with one clear error each', () => {
    const model = new TransformerLM(TINY);
    const cases: [tf.Tensor, string][] = [
      [tf.tensor2d([[1, 2, 11]], [1, 3], 'int32'), 'tokens[0, 2] = 11 is outside the vocabulary [0, 11)'],
      [tf.tensor2d([[1, 2]], [1, 2], 'float32'), 'tokens must be an int32 tensor [batch, seq], got float32 [1, 2]'],
      [tf.zeros([1, 7], 'int32'), 'needs batch >= 1 and 1 <= seq <= seqLen (6)'],
    ];
    for (const [t, message] of cases) expect(() => model.logits(t as tf.Tensor2D)).toThrow(message);
    const ok = tf.zeros([1, 3], 'int32') as tf.Tensor2D;
    const bad = tf.zeros([1, 2], 'int32') as tf.Tensor2D;
    expect(() => model.loss(ok, bad)).toThrow('targets must have the shape of inputs [1, 3], got [1, 2]');
    tf.dispose([...cases.map((c) => c[0]), ok, bad]);
    model.dispose();
  });
});

describe('TransformerLM gradients', () => {
  it.each([VARIANTS[0], VARIANTS[1]])('match float64 finite differences of the reference loss ($positions, tied $tieEmbeddings, $norm)', (variant) => {
    const rng = testRng();
    const model = new TransformerLM({ ...TINY, ...variant, seed: rng.int(1000) });
    randomizeState(model, rng);
    const inputs = randomTokens(rng, 2, 5, 11);
    const targets = randomTokens(rng, 2, 5, 11);
    const x = int2d(inputs);
    const y = int2d(targets);
    const vars = model.trainableVariables();
    const names = variableNames(model);
    expect(names).toHaveLength(vars.length);
    const { value, grads } = tf.variableGrads(() => model.loss(x, y, { training: true }).loss, vars);
    const w = weights(model);
    const lossAt = () => referenceLoss(referenceLogits(model.config, w, inputs), targets);
    expectClose(value.dataSync(), [lossAt()], { rtol: 1e-5 });
    const eps = 1e-5;
    vars.forEach((v, i) => {
      const analytic = grads[v.name]!.dataSync();
      const values = w.get(names[i]!)!;
      // Up to 10 coordinates per variable, spread over it.
      const coords = Array.from(new Set(Array.from({ length: Math.min(10, values.length) }, (_, j) => Math.floor((j * values.length) / Math.min(10, values.length) + rng.int(2)) % values.length)));
      const numeric = coords.map((k) => {
        const orig = values[k]!;
        values[k] = orig + eps;
        const up = lossAt();
        values[k] = orig - eps;
        const down = lossAt();
        values[k] = orig;
        return (up - down) / (2 * eps);
      });
      expectClose(
        coords.map((k) => analytic[k]!),
        numeric,
        { rtol: 5e-3, atol: 5e-5, label: `${names[i]} (seed ${rng.seed})` },
      );
    });
    tf.dispose([x, y, value, ...Object.values(grads)]);
    model.dispose();
  });

  it('leaks no tensors across a training step (grads, AdamW-style update, sparse step)', async () => {
    const model = new TransformerLM({ ...TINY, dropout: 0.1 });
    const x = tf.tensor2d([[1, 2, 3, 4, 5, 6]], [1, 6], 'int32');
    const y = tf.tensor2d([[2, 3, 4, 5, 6, 7]], [1, 6], 'int32');
    const optimizer = tf.train.adam(1e-3);
    const before = model.stateEntries()[0]!.data.slice();
    await expectNoLeaks(
      () => {
        const { value, grads } = tf.variableGrads(() => {
          const { loss, auxLoss } = model.loss(x, y, { training: true });
          return tf.add(loss, auxLoss) as tf.Scalar;
        }, model.trainableVariables());
        optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
        tf.tidy(() => model.trainableVariables().forEach((v) => v.assign(tf.mul(v, 0.999))));
        model.sparseStep(1);
        tf.dispose([value, ...Object.values(grads)]);
      },
      { warmup: 1, repeats: 2 },
    );
    expect(model.stateEntries()[0]!.data).not.toEqual(before);
    optimizer.dispose();
    tf.dispose([x, y]);
    model.dispose();
  });
});

describe('TransformerLM accounting', () => {
  it('counts parameters by hand: tied vs untied, rope vs learned', () => {
    // V 11, D 8, L 2, F 16, S 6, LayerNorm. Embedding 88; per block: norms 2*16, attention 4*64,
    // FFW 8*16 + 16 + 16*8 + 8 = 280, so 568; final norm 16.
    const tied = new TransformerLM(TINY);
    expect(tied.paramCounts()).toEqual({ total: 88 + 2 * 568 + 16, activePerToken: 1240, embedding: 88 });
    const untied = new TransformerLM({ ...TINY, tieEmbeddings: false });
    expect(untied.paramCounts()).toEqual({ total: 1240 + 88, activePerToken: 1328, embedding: 88 });
    const learned = new TransformerLM({ ...TINY, positions: 'learned' });
    expect(learned.paramCounts()).toEqual({ total: 1240 + 48, activePerToken: 1288, embedding: 88 + 48 });
    const rms = new TransformerLM({ ...TINY, norm: 'rmsnorm' });
    expect(rms.paramCounts().total).toBe(1240 - 5 * 8);
    for (const m of [tied, untied, learned, rms]) {
      expect(m.trainableVariables().reduce((s, v) => s + v.size, 0)).toBe(m.paramCounts().total);
      m.dispose();
    }
  });

  it('counts forward FLOPs per token by hand (attention at seqLen included)', () => {
    // Per block: QKV 2*8*24 = 384, QK^T 2*6*8 = 96, PV 96, projection 2*8*8 = 128, FFW 2*2*8*16 = 512
    // -> 1216; two blocks 2432; logits 2*8*11 = 176.
    const model = new TransformerLM(TINY);
    expect(model.flopsPerToken()).toBe(2 * (384 + 96 + 96 + 128 + 512) + 176);
    expect(model.trainingFlopsPerToken()).toBe(3 * 2608);
    model.dispose();
  });
});

describe('TransformerLM generation', () => {
  it('is greedy at temperature 0: each token is the argmax of the logits', () => {
    const rng = testRng();
    const model = new TransformerLM({ ...TINY, seed: rng.int(1000) });
    randomizeState(model, rng);
    const prompt = [3, 1, 4];
    const generated = model.generate(prompt, { maxNewTokens: 6, temperature: 0 });
    const tokens = [...prompt];
    for (let i = 0; i < 6; i++) {
      const context = tokens.slice(-6);
      const logits = model.logits(int2d([context]));
      const last = Array.from(logits.dataSync().slice((context.length - 1) * 11));
      logits.dispose();
      tokens.push(last.indexOf(Math.max(...last)));
    }
    expect(generated).toEqual(tokens.slice(3));
    expect(model.generate(prompt, { maxNewTokens: 6, temperature: 1, topK: 1, seed: 5 })).toEqual(generated);
    expect(model.generate(prompt, { maxNewTokens: 0 })).toEqual([]);
    model.dispose();
  });

  it('samples reproducibly from the seed and crops the context to seqLen', () => {
    const rng = testRng();
    const model = new TransformerLM({ ...TINY, seed: rng.int(1000) });
    randomizeState(model, rng);
    const before = tf.memory().numTensors;
    const a = model.generate([1, 2], { maxNewTokens: 20, temperature: 1.5, seed: 42 });
    expect(a).toHaveLength(20);
    expect(a.every((t) => Number.isInteger(t) && t >= 0 && t < 11)).toBe(true);
    expect(model.generate([1, 2], { maxNewTokens: 20, temperature: 1.5, seed: 42 })).toEqual(a);
    expect(model.generate([1, 2], { maxNewTokens: 20, temperature: 1.5, seed: 43 })).not.toEqual(a);
    const long = [5, 4, 3, 2, 1, 0, 9, 8, 7];
    expect(model.generate(long, { maxNewTokens: 4, temperature: 0 })).toEqual(model.generate(long.slice(-6), { maxNewTokens: 4, temperature: 0 }));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it.each([
    [[], { maxNewTokens: 1 }, 'prompt must be a non-empty array'],
    [[11], { maxNewTokens: 1 }, 'prompt[0] = 11 is not a token id in [0, 11)'],
    [[1], { maxNewTokens: -1 }, 'maxNewTokens must be a non-negative integer, got -1'],
    [[1], { maxNewTokens: 1, temperature: -1 }, 'temperature must be a finite number >= 0, got -1'],
    [[1], { maxNewTokens: 1, topK: 0 }, 'topK must be a positive integer, got 0'],
  ])('rejects prompt %j with %j', (prompt, options, message) => {
    const model = new TransformerLM(TINY);
    expect(() => model.generate(prompt, options)).toThrow(message);
    model.dispose();
  });
});

describe('TransformerLM state', () => {
  it('round-trips: entries loaded into a fresh model give identical logits', () => {
    const rng = testRng();
    const a = new TransformerLM({ ...TINY, positions: 'learned', tieEmbeddings: false, seed: 1 });
    randomizeState(a, rng);
    const entries = a.stateEntries();
    expect(entries.map((e) => e.name)).toEqual([
      'tok_emb.weight',
      'pos_emb.weight',
      ...[0, 1].flatMap((i) => [
        `blocks.${i}.norm1.weight`,
        `blocks.${i}.norm1.bias`,
        `blocks.${i}.attn.qkv.weight`,
        `blocks.${i}.attn.proj.weight`,
        `blocks.${i}.norm2.weight`,
        `blocks.${i}.norm2.bias`,
      ]),
      'norm_f.weight',
      'norm_f.bias',
      'lm_head.weight',
      ...[0, 1].flatMap((i) => ['w1', 'b1', 'w2', 'b2'].map((n) => `blocks.${i}.ffw.${n}`)),
      'rng.dropout',
    ]);
    expect(entries.find((e) => e.name === 'blocks.1.attn.qkv.weight')).toMatchObject({ dtype: 'F32', shape: [8, 24] });
    const b = new TransformerLM({ ...TINY, positions: 'learned', tieEmbeddings: false, seed: 2 });
    const byName = new Map(entries.map((e) => [e.name, e]));
    b.loadStateEntries((n) => byName.get(n));
    const tokens = int2d(randomTokens(rng, 2, 6, 11));
    expect(Array.from(b.logits(tokens).dataSync())).toEqual(Array.from(a.logits(tokens).dataSync()));
    tokens.dispose();
    a.dispose();
    b.dispose();
  });

  it('refuses missing and mis-shaped entries, naming them', () => {
    const model = new TransformerLM(TINY);
    const entries = new Map(model.stateEntries().map((e) => [e.name, e]));
    const without = (name: string) => (n: string) => (n === name ? undefined : entries.get(n));
    expect(() => model.loadStateEntries(without('blocks.1.attn.proj.weight'))).toThrow("model state: entry 'blocks.1.attn.proj.weight' is missing");
    expect(() => model.loadStateEntries(without('blocks.0.ffw.b2'))).toThrow("entry 'blocks.0.ffw.b2' is missing");
    const bigger = new TransformerLM({ ...TINY, vocabSize: 12 });
    const other = new Map(bigger.stateEntries().map((e) => [e.name, e]));
    expect(() => model.loadStateEntries((n) => other.get(n))).toThrow("model state: entry 'tok_emb.weight' has shape [12, 8], expected [11, 8]");
    bigger.dispose();
    model.dispose();
  });
});

describe('TransformerLM construction', () => {
  const peerDefault = feedForwardFactory('peer')!;
  afterEach(() => {
    registerFeedForward('peer', peerDefault);
  });

  it.each([
    [{ ...TINY, heads: 3 }, 'heads = 3: must divide dim (8)'],
    [{ ...TINY, sparseBlocks: [2] }, 'sparseBlocks.0 = 2: block index out of range'],
    [{ ...TINY, vocabSize: -1 }, 'vocabSize = -1'],
  ])('rejects a bad config: %j', (config, message) => {
    expect(() => new TransformerLM(config)).toThrow(message);
  });

  it('refuses an unregistered FFW kind before allocating anything', () => {
    unregisterFeedForward('peer');
    const before = tf.memory().numTensors;
    expect(() => new TransformerLM({ ...TINY, ffw: { kind: 'peer' } })).toThrow(
      "no feed-forward layer is registered for kind 'peer' (ffw.kind, block 1): call registerFeedForward('peer', factory)",
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('releases everything on dispose, and everything made so far when a factory throws', () => {
    const before = tf.memory().numTensors;
    const model = new TransformerLM({ ...TINY, positions: 'learned', tieEmbeddings: false });
    model.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => model.flopsPerToken()).toThrow('used after dispose');
    registerFeedForward('peer', () => {
      throw new Error('factory failed');
    });
    expect(() => new TransformerLM({ ...TINY, layers: 3, ffw: { kind: 'peer' } })).toThrow('factory failed');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('plugs in a sparse FFW from the registry: options, aux loss, costs, sparse steps', () => {
    const calls: { sparseSteps: number[]; zeroed: number; options: unknown[] } = { sparseSteps: [], zeroed: 0, options: [] };
    /** A stand-in sparse layer: y = x W, an auxiliary loss, a pretend sparse table of 1000 parameters. */
    class StubSparse implements FeedForwardLayer {
      readonly kind = 'peer' as const;
      readonly w: tf.Variable;
      constructor(readonly dim: number) {
        this.w = tf.variable(tf.eye(dim), true);
      }
      apply(x: tf.Tensor3D, mode: { training: boolean }) {
        const [b, s, d] = x.shape;
        const y = tf.reshape(tf.matMul(tf.reshape(x, [b * s, d]), this.w), [b, s, d]) as tf.Tensor3D;
        return mode.training ? { y, auxLoss: tf.mul(tf.mean(tf.square(y)), 0.01) as tf.Scalar } : { y };
      }
      trainableVariables() {
        return [this.w];
      }
      sparseStep(lrScale: number) {
        calls.sparseSteps.push(lrScale);
      }
      zeroSparseGrads() {
        calls.zeroed++;
      }
      flopsPerToken() {
        return 2 * this.dim * this.dim + 100;
      }
      activeParamsPerToken() {
        return this.dim * this.dim + 10;
      }
      totalParams() {
        return this.dim * this.dim + 1000;
      }
      stateEntries(prefix: string): NamedArray[] {
        return [{ name: `${prefix}w`, dtype: 'F32', shape: [...this.w.shape], data: Float32Array.from(this.w.dataSync()) }];
      }
      loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined) {
        const e = get(`${prefix}w`);
        if (!e) throw new Error(`missing ${prefix}w`);
        this.w.assign(tf.tensor(e.data as Float32Array, this.w.shape));
      }
      dispose() {
        this.w.dispose();
      }
    }
    registerFeedForward('peer', ({ dim, options }) => {
      calls.options.push(options);
      return new StubSparse(dim);
    });
    const model = new TransformerLM({ ...TINY, layers: 3, ffw: { kind: 'peer', hidden: 16, options: { experts: 64 } } });
    expect(model.feedForwards().map((f) => f.kind)).toEqual(['dense', 'peer', 'dense']);
    expect(calls.options).toEqual([{ experts: 64 }]);
    expect(model.feedForwards()[0]!.totalParams()).toBe(280);
    model.sparseStep(0.5);
    model.sparseStep(1);
    model.zeroSparseGrads();
    expect(calls.sparseSteps).toEqual([0.5, 1]);
    expect(calls.zeroed).toBe(1);
    expect(() => model.sparseStep(Number.NaN)).toThrow('lrScale must be a finite number >= 0, got NaN');

    // Costs: dense blocks as before (1216 FLOPs, 568 params), the stub block 704 + 228 FLOPs.
    const attention = 384 + 96 + 96 + 128;
    expect(model.flopsPerToken()).toBe(2 * 1216 + attention + 2 * 64 + 100 + 176);
    const stubBlock = 32 + 256;
    expect(model.paramCounts()).toEqual({
      total: 88 + 2 * 568 + stubBlock + 64 + 1000 + 16,
      activePerToken: 88 + 2 * 568 + stubBlock + 64 + 10 + 16,
      embedding: 88,
    });

    // Its auxiliary loss reaches loss(), its variable the trainable list, its state the entries.
    const x = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const { loss, auxLoss } = model.loss(x, x, { training: true });
    expect(auxLoss.dataSync()[0]).toBeGreaterThan(0);
    const evalLoss = model.loss(x, x, { training: false });
    expect(evalLoss.auxLoss.dataSync()[0]).toBe(0);
    expect(model.trainableVariables()).toContain((model.feedForwards()[1] as StubSparse).w);
    expect(model.stateEntries().map((e) => e.name)).toContain('blocks.1.ffw.w');
    tf.dispose([x, loss, auxLoss, evalLoss.loss, evalLoss.auxLoss]);
    model.dispose();
  });
});
