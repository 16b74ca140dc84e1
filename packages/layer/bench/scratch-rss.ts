import * as tf from '@tensorflow/tfjs-core';
import { initBackend, heapStats } from '@peer/backend';
import { PeerLayer } from '../src/peer-layer.js';
await initBackend({ backend: 'wasm', log: false });
const rss = (l: string) => { const m = process.memoryUsage(); console.log(l.padEnd(12), 'rss', (m.rss / 1e9).toFixed(3), 'max', (process.resourceUsage().maxRSS * 1024 / 1e9).toFixed(3), 'heapUsed', (m.heapUsed / 1e6).toFixed(0), 'ext', (m.external / 1e6).toFixed(0), 'ab', (m.arrayBuffers / 1e6).toFixed(0), 'wasm', (heapStats()!.heapBytes / 1e6).toFixed(0)); };
rss('start');
const layer = new PeerLayer({ dim: 256, numExperts: 1 << 20, heads: 8, topK: 16, dimKey: 128 });
rss('layer');
for (const e of layer.expertOptimizer.stateEntries()) { const d = e.data as Float32Array; for (let i = 0; i < d.length; i += 1024) d[i] = d[i]!; }
rss('prefault');
const x = tf.variable(tf.randomNormal([1, 512, 256]));
const r = tf.randomNormal([1, 512, 256], 0, 1 / 512);
const opt = tf.train.adam(1e-3);
const vars = layer.trainableVariables();
for (let i = 0; i < 4; i++) {
  tf.tidy(() => { const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x as tf.Tensor3D, { training: true }).y, r)) as tf.Scalar, [x, ...vars]); value.dataSync(); opt.applyGradients(vars.map((v) => ({ name: v.name, tensor: grads[v.name]! }))); });
  rss(`fwd+bwd ${i}`);
  layer.sparseStep(1);
  rss(`sparse ${i}`);
}
