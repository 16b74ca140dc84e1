import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@peer/backend';
import { QueryNorm } from '../src/query-norm.js';
import { KernelArena } from '../src/kernels/kernel-arena.js';
await initBackend({ backend: 'wasm', log: false });
const T = 512, F = 2048;
const q = tf.randomNormal([T, F]) as tf.Tensor2D;
const norm = new QueryNorm({ kind: 'batch', features: F, momentum: 0.1, eps: 1e-5, name: 'x' });
function time(name: string, f: () => void) {
  const cs: number[] = [];
  for (let i = 0; i < 10; i++) { const c0 = process.cpuUsage(); f(); const c = process.cpuUsage(c0); cs.push((c.user + c.system) / 1000); }
  cs.shift(); cs.sort((a, b) => a - b); console.log(name.padEnd(30), 'cpu med', cs[4]!.toFixed(2), 'min', cs[0]!.toFixed(2));
}
time('bn fwd', () => tf.tidy(() => { norm.apply(q, true, false).dataSync(); }));
time('bn fwd (update stats)', () => tf.tidy(() => { norm.apply(q, true).dataSync(); }));
const dy = tf.randomNormal([T, F]);
time('bn fwd+bwd', () => tf.tidy(() => { tf.grad((a: tf.Tensor) => tf.sum(tf.mul(norm.apply(a as tf.Tensor2D, true, false), dy)))(q).dataSync(); }));
time('mul+sum only', () => tf.tidy(() => { tf.sum(tf.mul(q, dy)).dataSync(); }));
time('q.dataSync', () => { q.dataSync(); });
time('tensor2d 4MB', () => { tf.tensor2d(new Float32Array(T * F), [T, F]).dispose(); });
const k = new KernelArena(); k.reset(); const a = k.alloc(T * F), o = k.alloc(F), b = k.alloc(T * F);
time('colSum', () => k.colSum(a, o, T, F));
time('affine', () => k.affine(a, o, o, o, b, T, F));
time('view set 4MB', () => k.view(a).set(q.dataSync()));
time('view slice 4MB', () => { k.view(a).slice(); });
