// node bench/tf-layers-step.mjs [rounds] - the cost of the tf.layers wrapper: one PEER layer
// (d 256, N 128^2, h 8, k 16, dk 128, 512 tokens as [4, 128, 256]) trained by a plain loop
// (variableGrads + Adam + sparseStep) and by model.fit with sparseStepCallback, in alternating
// rounds of 5 steps each (after a warm-up round); prints the median ms per step of each. Runs the
// built package (pnpm build first).
import process from 'node:process';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@peer/backend';
import { PeerLayer } from '@peer/layer';
import { peer, sparseStepCallback } from '@peer/layer/tf-layers';

const rounds = Number(process.argv[2] ?? 5);
const STEPS = 5;
const config = { numExperts: 128 * 128, heads: 8, topK: 16, dimKey: 128, seed: 1 };
const [B, S, D] = [4, 128, 256];
await initBackend({ backend: 'wasm', log: false });

const xs = tf.randomNormal([B * STEPS, S, D], 0, 1, 'float32', 1);
const ys = tf.randomNormal([B * STEPS, S, D], 0, 1, 'float32', 2);

const plain = new PeerLayer({ ...config, dim: D });
const plainOptimizer = tf.train.adam(1e-3);
async function plainRound() {
  const t0 = performance.now();
  for (let i = 0; i < STEPS; i++) {
    tf.tidy(() => {
      const x = tf.slice(xs, [i * B, 0, 0], [B, S, D]);
      const y = tf.slice(ys, [i * B, 0, 0], [B, S, D]);
      const { value, grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, plain.apply(x, { training: true }).y), plain.trainableVariables());
      plainOptimizer.applyGradients(grads);
      value.dataSync();
    });
    plain.sparseStep(1);
  }
  return (performance.now() - t0) / STEPS;
}

const model = tf.sequential({ layers: [peer({ ...config, inputShape: [S, D] })] });
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'meanSquaredError' });
const callback = sparseStepCallback(model);
async function fitRound() {
  const t0 = performance.now();
  await model.fit(xs, ys, { epochs: 1, batchSize: B, shuffle: false, verbose: 0, callbacks: [callback] });
  return (performance.now() - t0) / STEPS;
}

await plainRound();
await fitRound();
const times = { plain: [], fit: [] };
for (let r = 0; r < rounds; r++) {
  times.plain.push(await plainRound());
  times.fit.push(await fitRound());
}
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const result = { plainMs: median(times.plain), fitMs: median(times.fit) };
process.stdout.write(`${JSON.stringify({ ...result, overhead: result.fitMs / result.plainMs - 1, rounds, times })}\n`);
