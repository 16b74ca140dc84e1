import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@peer/backend';
import { QueryNorm } from '../src/query-norm.js';
await initBackend({ backend: 'wasm', log: false });
const T = 512, F = 2048;
const q = tf.randomNormal([T, F]) as tf.Tensor2D;
const norm = new QueryNorm({ kind: 'batch', features: F, momentum: 0.1, eps: 1e-5, name: 'x' });
function time(name: string, f: () => void) {
  const cs: number[] = [];
  for (let i = 0; i < 8; i++) { const c0 = process.cpuUsage(); f(); const c = process.cpuUsage(c0); cs.push((c.user + c.system) / 1000); }
  cs.shift(); cs.sort((a, b) => a - b); console.log(name.padEnd(30), 'cpu med', cs[3]!.toFixed(2), 'min', cs[0]!.toFixed(2));
}
time('bn fwd', () => tf.tidy(() => { norm.apply(q, true, false).dataSync(); }));
time('bn fwd+bwd', () => tf.tidy(() => { tf.grads((a: tf.Tensor) => tf.sum(norm.apply(a as tf.Tensor2D, true, false)))([q])[0]!.dataSync(); }));
time('q dataSync', () => { q.dataSync(); });
const qv = q.dataSync() as Float32Array;
const mean = new Float64Array(F);
time('js col sum', () => { mean.fill(0); for (let t = 0; t < T; t++) { const o = t * F; for (let j = 0; j < F; j++) mean[j]! += qv[o + j]!; } });
const out = new Float32Array(T * F);
time('js map', () => { for (let i = 0; i < T * F; i++) out[i] = qv[i]! * 2 + 1; });
time('tensor2d create', () => { tf.tensor2d(out, [T, F]).dispose(); });
time('tf sum', () => tf.tidy(() => { tf.sum(q).dataSync(); }));
const xhat = new Float32Array(T * F), y = new Float32Array(T * F);
const g = new Float32Array(F).fill(1), b = new Float32Array(F);
function nf(q: Float32Array, gamma: Float32Array, beta: Float32Array, tokens: number, features: number, eps: number, mean: Float64Array, variance: Float64Array, rstd: Float64Array, xhat: Float32Array, y: Float32Array) {
  for (let t = 0; t < tokens; t++) { const o = t * features; for (let j = 0; j < features; j++) mean[j]! += q[o + j]!; }
  for (let j = 0; j < features; j++) mean[j]! /= tokens;
  for (let t = 0; t < tokens; t++) { const o = t * features; for (let j = 0; j < features; j++) { const c = q[o + j]! - mean[j]!; variance[j]! += c * c; } }
  for (let j = 0; j < features; j++) { variance[j]! /= tokens; rstd[j] = 1 / Math.sqrt(variance[j]! + eps); }
  for (let t = 0; t < tokens; t++) { const o = t * features; for (let j = 0; j < features; j++) { const h = (q[o + j]! - mean[j]!) * rstd[j]!; xhat[o + j] = h; y[o + j] = h * gamma[j]! + beta[j]!; } }
}
time('nf prealloc', () => nf(qv, g, b, T, F, 1e-5, new Float64Array(F), new Float64Array(F), new Float64Array(F), xhat, y));
time('nf fresh alloc', () => nf(qv, g, b, T, F, 1e-5, new Float64Array(F), new Float64Array(F), new Float64Array(F), new Float32Array(T * F), new Float32Array(T * F)));
time('alloc 2x4MB', () => { new Float32Array(T * F); new Float32Array(T * F); });
