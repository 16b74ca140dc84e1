// The small-product matMul kernel against XNNPACK: `pnpm bench:small-mat-mul THREADS [REPS] [SHAPES]`
// in packages/backend (THREADS of the wasm engine, 1 or more; SHAPES a JSON list of [Bt, M, K, P]).
// Each product follows the previous one after a 2 ms gap, as products do inside a training step
// (the gap is what makes XNNPACK's thread pool costly); the two routes alternate; medians.
// Bt > 1 runs Bt per-batch products (fresh views: XNNPACK packs b on every call, as in the PEER layer).
// Axes: Bt batches, M rows, K contracted axis, P columns.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/index.js';
import { setSmallMatMulMaxWork } from '../src/wasm/small-mat-mul.js';

const DEFAULT_SHAPES = [
  [1, 16, 16, 16],
  [1, 64, 64, 64],
  [1, 128, 128, 128],
  [8, 128, 128, 128],
  [1, 128, 128, 1024],
  [4, 128, 128, 1024],
  [1, 256, 256, 256],
  [1, 512, 256, 256],
  [1, 512, 512, 256],
  [1, 8, 4096, 1024],
  [1, 512, 512, 512],
];
const GAP_MS = 2;

const threads = Number(process.argv[2] ?? 1);
const repeats = Number(process.argv[3] ?? 20);
const shapes = process.argv[4] ? (JSON.parse(process.argv[4]) as number[][]) : DEFAULT_SHAPES;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const started = await initBackend({ backend: 'wasm', threads, log: false });
const sleeper = new Int32Array(new SharedArrayBuffer(4));
console.log(`wasm, ${started.threads ?? 1} thread(s); ${GAP_MS} ms between products; medians`);
console.log('| product | ours | XNNPACK | XNNPACK / ours |\n| --- | --- | --- | --- |');
for (const [bt, m, k, p] of shapes as [number, number, number, number][]) {
  const x = tf.randomNormal(bt > 1 ? [bt, m, k] : [m, k]);
  const y = tf.randomNormal(bt > 1 ? [bt, k, p] : [k, p]);
  const ms: Record<'ours' | 'xnnpack', number[]> = { ours: [], xnnpack: [] };
  const once = (route: 'ours' | 'xnnpack'): number => {
    setSmallMatMulMaxWork(route === 'ours' ? Infinity : 0);
    const t0 = performance.now();
    const out = tf.matMul(x, y);
    const elapsed = performance.now() - t0;
    out.dispose();
    return elapsed;
  };
  once('ours');
  once('xnnpack');
  const n = bt * m * k * p > 1e8 ? Math.min(5, repeats) : repeats;
  for (let i = 0; i < n; i++) {
    for (const route of i % 2 ? (['ours', 'xnnpack'] as const) : (['xnnpack', 'ours'] as const)) {
      Atomics.wait(sleeper, 0, 0, GAP_MS);
      ms[route].push(once(route));
    }
  }
  const [ours, xnnpack] = [median(ms.ours), median(ms.xnnpack)];
  const name = `${bt > 1 ? `${bt} x ` : ''}[${m},${k}]x[${k},${p}]`;
  console.log(`| ${name} | ${ours.toFixed(2)} ms | ${xnnpack.toFixed(2)} ms | ${(xnnpack / ours).toFixed(2)} |`);
  tf.dispose([x, y]);
}
setSmallMatMulMaxWork(undefined);
