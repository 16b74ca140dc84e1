// Times one training step (forward + backward + AdamW) of the dense reference model:
// d = 256, 4 layers, 4 heads, seq 256, batch 16, byte vocabulary (the configuration of the PyTorch
// reference rate in the README).
//
//   pnpm bench                                  # wasm, 2 warm-up + 5 timed steps
//   pnpm bench -- --backend cpu --steps 2       # other engine / fewer steps
//   pnpm bench -- --attention batched           # the batched-matMul attention path
//   pnpm bench -- --activation relu --json      # dense FFW activation; one JSON line at the end
//
// Reports medians: step time, tokens/s, achieved GFLOP/s (3 x forward FLOPs per token x tokens),
// and model FLOPs utilization: each step's achieved rate over the engine's 512^3 matMul rate
// measured right before that step (the median of those ratios).
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, initBackend, measureMatMulRate, type BackendRequest } from '@peer/backend';
import { TransformerLM, type ModelConfigInput } from '../src/index.js';
import { registerProjectLayers } from '../src/project-layers.test-util.js';

const { values: args } = parseArgs({
  // pnpm forwards the `--` separator itself.
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    backend: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    batch: { type: 'string', default: '16' },
    attention: { type: 'string', default: 'auto' },
    activation: { type: 'string', default: 'gelu' },
    json: { type: 'boolean', default: false },
  },
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const choice = await initBackend({ backend: args.backend as BackendRequest, log: false });
  const batch = Number(args.batch);
  const config: ModelConfigInput = {
    vocabSize: 256,
    dim: 256,
    layers: 4,
    heads: 4,
    seqLen: 256,
    ffw: { kind: 'dense', options: { activation: args.activation } },
    seed: 1,
  };
  registerProjectLayers();
  const model = new TransformerLM(config, { attention: args.attention as 'auto' | 'sliced' | 'batched' });
  const { seqLen, vocabSize } = model.config;
  const tokens = batch * seqLen;
  const rng = new Rng(0);
  const data = new Int32Array(batch * (seqLen + 1)).map(() => rng.int(vocabSize));
  const inputs = tf.tensor2d(
    Int32Array.from({ length: batch * seqLen }, (_, i) => data[Math.floor(i / seqLen) * (seqLen + 1) + (i % seqLen)]!),
    [batch, seqLen],
    'int32',
  );
  const targets = tf.tensor2d(
    Int32Array.from({ length: batch * seqLen }, (_, i) => data[Math.floor(i / seqLen) * (seqLen + 1) + (i % seqLen) + 1]!),
    [batch, seqLen],
    'int32',
  );

  const lr = 3e-4;
  const weightDecay = 0.1;
  const optimizer = tf.train.adam(lr, 0.9, 0.95, 1e-8);
  const variables = model.trainableVariables();
  const decayed = variables.filter((v) => v.rank >= 2);
  const step = (): number => {
    const { value, grads } = tf.variableGrads(() => {
      const { loss, auxLoss } = model.loss(inputs, targets, { training: true });
      return tf.add(loss, auxLoss) as tf.Scalar;
    }, variables);
    optimizer.applyGradients(grads as Parameters<typeof optimizer.applyGradients>[0]);
    // AdamW: decoupled weight decay on the matrices.
    tf.tidy(() => decayed.forEach((v) => v.assign(tf.mul(v, 1 - lr * weightDecay))));
    model.sparseStep(1);
    const loss = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    return loss;
  };
  const forwardOnly = (): void => {
    const { loss, auxLoss } = model.loss(inputs, targets, { training: true });
    loss.dataSync();
    tf.dispose([loss, auxLoss]);
  };

  for (let i = 0; i < Number(args.warmup); i++) step();
  const trainingFlops = model.trainingFlopsPerToken() * tokens;
  const stepMs: number[] = [];
  const forwardMs: number[] = [];
  const rates: number[] = [];
  const mfus: number[] = [];
  let loss = NaN;
  for (let i = 0; i < Number(args.steps); i++) {
    // The matMul rate right before each step, so that utilization compares like with like on a
    // machine whose load changes (other processes share the cores).
    const rate = (await measureMatMulRate(512, 3)).gflops;
    let t0 = performance.now();
    loss = step();
    const dt = performance.now() - t0;
    stepMs.push(dt);
    rates.push(rate);
    mfus.push(trainingFlops / (dt * 1e6) / rate);
    t0 = performance.now();
    forwardOnly();
    forwardMs.push(performance.now() - t0);
  }
  const ms = median(stepMs);
  const fwdMs = median(forwardMs);
  const gflops = trainingFlops / (ms * 1e6);
  const rate = { gflops: median(rates) };
  const result = {
    backend: choice.backend,
    fixes: choice.fixes,
    attention: args.attention,
    activation: args.activation,
    batch,
    tokensPerStep: tokens,
    params: model.paramCounts().total,
    forwardFlopsPerToken: model.flopsPerToken(),
    stepMs: Math.round(ms),
    forwardMs: Math.round(fwdMs),
    backwardAndUpdateMs: Math.round(ms - fwdMs),
    tokensPerSecond: Math.round(tokens / (ms / 1000)),
    achievedGflops: Number(gflops.toFixed(2)),
    matMulGflops: Number(rate.gflops.toFixed(2)),
    mfu: Number(median(mfus).toFixed(3)),
    bestStepMs: Math.round(Math.min(...stepMs)),
    lastLoss: Number(loss.toFixed(4)),
    numTensors: tf.memory().numTensors,
  };
  console.log(`backend ${result.backend} (fixes: ${result.fixes.join(', ') || 'none'}), attention ${result.attention}, FFW ${result.activation}`);
  console.log(`model: ${(result.params / 1e6).toFixed(2)}M params, ${(result.forwardFlopsPerToken / 1e6).toFixed(2)} MFLOP/token forward; batch ${batch} x ${seqLen}`);
  console.log(`step ${result.stepMs} ms (forward ${result.forwardMs} ms, backward + AdamW ${result.backwardAndUpdateMs} ms), medians of ${args.steps}`);
  // PyTorch on the same model is measured side by side by `peer-train bench train`, not compared to a constant here.
  console.log(`${result.tokensPerSecond} tokens/s`);
  console.log(`${result.achievedGflops} GFLOP/s vs matMul ${result.matMulGflops} GFLOP/s: MFU ${(result.mfu * 100).toFixed(1)}% (median of per-step ratios)`);
  console.log(`best step ${result.bestStepMs} ms = ${Math.round(tokens / (result.bestStepMs / 1000))} tokens/s`);
  if (args.json) console.log(JSON.stringify(result));
  tf.dispose([inputs, targets]);
  optimizer.dispose();
  model.dispose();
}

await main();
