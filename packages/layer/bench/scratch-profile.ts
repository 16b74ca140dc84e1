import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@peer/backend';
import { retrieve } from '@peer/product-keys';
import { PeerLayer } from '../src/peer-layer.js';
import { expertMixture, MixtureWorkspace } from '../src/expert-mixture.js';
await initBackend({ backend: 'wasm', log: false });
const N = Number(process.env.NN ?? 16384);
const layer = new PeerLayer({ dim: 256, numExperts: N, heads: 8, topK: 16, dimKey: 128 });
const T = 512;
const x = tf.randomNormal([T, 256]) as tf.Tensor2D;
function time(name: string, f: () => unknown) {
  const ts: number[] = []; const cs: number[] = [];
  for (let i = 0; i < 6; i++) { const c0 = process.cpuUsage(); const t0 = performance.now(); tf.tidy(() => { const r = f(); if (r instanceof tf.Tensor) r.dataSync(); else if (Array.isArray(r)) r.forEach((t) => t.dataSync()); }); ts.push(performance.now() - t0); const c = process.cpuUsage(c0); cs.push((c.user + c.system) / 1000); }
  ts.shift(); cs.shift(); ts.sort((a, b) => a - b); cs.sort((a, b) => a - b); console.log(name.padEnd(30), 'wall med', ts[2]!.toFixed(1), 'cpu med', cs[2]!.toFixed(1), 'cpu min', cs[0]!.toFixed(1));
}
const q = tf.matMul(x, layer.queryWeight) as tf.Tensor2D;
const qn = layer.queryNorm.apply(q, true, false);
const r = retrieve(tf.reshape(qn, [T, 8, 256]), layer.keys, { k: 16 });
const idx = r.indices.dataSync() as Int32Array;
const g = tf.reshape(tf.softmax(r.scores), [T, 128]) as tf.Tensor2D;
const tables = { down: layer.down, up: layer.up, downGrad: layer.downGrad, upGrad: layer.upGrad };
const ws = new MixtureWorkspace();
const dy = tf.randomNormal([T, 256]);
time('qproj fwd+bwd', () => tf.grads((a: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, w), 0.1)))([x, layer.queryWeight]));
time('bn fwd+bwd', () => tf.grads((a: tf.Tensor) => tf.sum(tf.mul(layer.queryNorm.apply(a as tf.Tensor2D, true, false), 0.1)))([q]));
time('retrieve fwd', () => { const r = retrieve(tf.reshape(qn, [T, 8, 256]), layer.keys, { k: 16 }); return [r.indices, r.scores]; });
time('retrieve fwd+bwd', () => tf.grads((a: tf.Tensor) => tf.sum(retrieve(tf.reshape(a, [T, 8, 256]), layer.keys, { k: 16 }).scores))([qn]));
time('gather u', () => { layer.down.gatherInto(idx, new Float32Array(idx.length * 256)); return []; });
time('mixture fwd', () => expertMixture(x, g, idx, tables, ws, { activation: 'gelu' }));
time('mixture fwd+bwd', () => { const r = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(expertMixture(a as tf.Tensor2D, b as tf.Tensor2D, idx, tables, ws, { activation: 'gelu' }), dy)))([x, g]); layer.zeroSparseGrads(); return r; });
const nullSink = { accumulate() {} };
const tables0 = { down: layer.down, up: layer.up, downGrad: nullSink, upGrad: nullSink };
time('mixture fwd+bwd no accumulate', () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(expertMixture(a as tf.Tensor2D, b as tf.Tensor2D, idx, tables0, ws, { activation: 'gelu' }), dy)))([x, g]));
time('mixture+sparse step', () => { const r = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(expertMixture(a as tf.Tensor2D, b as tf.Tensor2D, idx, tables, ws, { activation: 'gelu' }), dy)))([x, g]); layer.sparseStep(1); return r; });
