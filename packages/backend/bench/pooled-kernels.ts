// The kernels split over the kernel pool, on and off: `pnpm bench:pooled THREADS [REPS]` in
// packages/backend (THREADS of the wasm engine and the pool; with 1 there is no pool and only the
// "off" column means anything). Batched small products (pooled-small-mat-mul.ts), float32
// Add / Multiply (pooled-binary.ts), transposes (blocked-transpose.ts) and AdamW (fused-adamw.ts) at
// sizes around their thresholds and at the dense LM's sizes, and column sums (heap-column-sums.ts).
// Each call follows the previous one after a 2 ms gap, as kernels do inside a training step (the
// pool's workers sleep between passes); on and off alternate; medians.
// Axes: Bt batches, M rows, K contracted axis, P columns; T rows of an elementwise operand, X its width.
import * as tf from '@tensorflow/tfjs-core';
import { adamwUpdate, columnSums, initBackend, installWasmFixes, uninstallWasmFixes } from '../src/index.js';
import { useComposedAdamw } from '../src/ops/adamw.js';
import { useHostColumnSums } from '../src/ops/column-sums.js';
import { setPooledTransposeMinSize } from '../src/wasm/blocked-transpose.js';
import { setPooledAdamwMinSize } from '../src/wasm/fused-adamw.js';
import { setPooledBinaryMinSize } from '../src/wasm/pooled-binary.js';
import { setPooledMatMulMinWork } from '../src/wasm/pooled-small-mat-mul.js';

const GAP_MS = 2;
const threads = Number(process.argv[2] ?? 2);
const repeats = Number(process.argv[3] ?? 15);

/** [Bt, M, K, P, transposeB] */
const PRODUCTS: [number, number, number, number, boolean][] = [
  [4, 32, 32, 32, false],
  [2, 64, 64, 64, false],
  [4, 64, 64, 64, false],
  [8, 64, 64, 64, false],
  [16, 64, 64, 64, false],
  [64, 64, 64, 64, false],
  [16, 128, 128, 128, false],
  [64, 128, 64, 128, false],
  [64, 256, 64, 256, false],
  [64, 256, 256, 64, false],
  [64, 256, 64, 256, true],
];
/** [a shape, b shape, op] */
const ELEMENTWISE: [number[], number[], 'add' | 'mul'][] = [
  [[2 ** 14], [2 ** 14], 'add'],
  [[2 ** 15], [2 ** 15], 'add'],
  [[2 ** 16], [2 ** 16], 'add'],
  [[2 ** 17], [2 ** 17], 'add'],
  [[2 ** 18], [2 ** 18], 'add'],
  [[4096, 256], [4096, 256], 'add'],
  [[4096, 256], [256], 'add'],
  [[4096, 256], [4096, 1], 'mul'],
  [[64, 256, 256], [256, 256], 'add'],
  [[4096, 1024], [4096, 1024], 'mul'],
  [[64, 256, 256], [64, 256, 256], 'mul'],
];

/** [shape, perm] */
const TRANSPOSES: [number[], number[]][] = [
  [[256, 256], [1, 0]],
  [[512, 512], [1, 0]],
  [[1024, 1024], [1, 0]],
  [[4096, 1024], [1, 0]],
  [[64, 256, 64], [0, 2, 1]],
  [[16, 256, 4, 64], [0, 2, 1, 3]],
  [[12, 16, 256, 64], [1, 2, 0, 3]],
];
/** Elements of a variable. */
const ADAMW_SIZES = [2 ** 14, 2 ** 16, 2 ** 17, 2 ** 18, 2 ** 20, 2 ** 22];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Medians of `run` with the pool off and on (alternating, each call after a gap). */
function onOff(setPooled: (on: boolean) => void, run: () => tf.Tensor): { off: number; on: number } {
  const ms = { off: [] as number[], on: [] as number[] };
  const once = (route: 'off' | 'on'): number => {
    setPooled(route === 'on');
    Atomics.wait(sleeper, 0, 0, GAP_MS);
    const t0 = performance.now();
    const out = run();
    const elapsed = performance.now() - t0;
    out.dispose();
    return elapsed;
  };
  once('off');
  once('on');
  for (let i = 0; i < repeats; i++) {
    for (const route of i % 2 ? (['on', 'off'] as const) : (['off', 'on'] as const)) ms[route].push(once(route));
  }
  return { off: median(ms.off), on: median(ms.on) };
}

const started = await initBackend({ backend: 'wasm', threads, log: false });
console.log(`wasm, ${started.threads ?? 1} thread(s)${started.threadsNote ? ` (${started.threadsNote})` : ''}; ${GAP_MS} ms between calls; medians of ${repeats}`);
console.log('| kernel | pool off | pool on | off / on |\n| --- | --- | --- | --- |');
const row = (name: string, { off, on }: { off: number; on: number }) =>
  console.log(`| ${name} | ${off.toFixed(3)} ms | ${on.toFixed(3)} ms | ${(off / on).toFixed(2)} |`);

for (const [bt, m, k, p, transposeB] of PRODUCTS) {
  const a = tf.randomNormal([bt, m, k]);
  const b = tf.randomNormal(transposeB ? [bt, p, k] : [bt, k, p]);
  const work = bt * m * k * p;
  row(
    `matMul ${bt} x [${m},${k}]x[${k},${p}]${transposeB ? ' transposeB' : ''} (2^${Math.log2(work).toFixed(1)})`,
    onOff((on) => setPooledMatMulMinWork(on ? 0 : Infinity), () => tf.matMul(a, b, false, transposeB)),
  );
  tf.dispose([a, b]);
}
setPooledMatMulMinWork(undefined);

// Elementwise: "off" is the engine's own kernel (fixes uninstalled), "on" the pool; a third column
// times our kernel on the calling thread.
console.log('\n| elementwise | engine | pool | this thread |\n| --- | --- | --- | --- |');
for (const [aShape, bShape, op] of ELEMENTWISE) {
  const a = tf.randomNormal(aShape);
  const b = tf.randomNormal(bShape);
  const run = () => (op === 'add' ? tf.add(a, b) : tf.mul(a, b));
  const pool = onOff((on) => {
    if (on) installWasmFixes();
    else uninstallWasmFixes();
    setPooledBinaryMinSize(0);
  }, run);
  installWasmFixes();
  const here = onOff((on) => setPooledBinaryMinSize(on ? Infinity : 0), run);
  console.log(`| ${op} [${aShape}] [${bShape}] | ${pool.off.toFixed(3)} ms | ${pool.on.toFixed(3)} ms | ${here.on.toFixed(3)} ms |`);
  tf.dispose([a, b]);
}
installWasmFixes();
setPooledBinaryMinSize(undefined);

// Transposes: "engine" is the built-in kernel (fixes uninstalled), then the pool, then our kernel on
// the calling thread.
console.log('\n| transpose | engine | pool | this thread |\n| --- | --- | --- | --- |');
for (const [shape, perm] of TRANSPOSES) {
  const x = tf.randomNormal(shape);
  const run = () => tf.transpose(x, perm);
  const pool = onOff((on) => {
    if (on) installWasmFixes();
    else uninstallWasmFixes();
    setPooledTransposeMinSize(0);
  }, run);
  installWasmFixes();
  const here = onOff((on) => setPooledTransposeMinSize(on ? Infinity : 0), run);
  console.log(`| [${shape}] perm [${perm}] | ${pool.off.toFixed(3)} ms | ${pool.on.toFixed(3)} ms | ${here.on.toFixed(3)} ms |`);
  x.dispose();
}
setPooledTransposeMinSize(undefined);

// AdamW: "composed" is the tfjs-op composition (ten engine kernels), then the fused pass on the pool,
// then on the calling thread.
console.log('\n| AdamW, elements | composed | pool | this thread |\n| --- | --- | --- | --- |');
for (const size of ADAMW_SIZES) {
  const [p, m, v] = [tf.variable(tf.randomNormal([size])), tf.variable(tf.zeros([size])), tf.variable(tf.zeros([size]))];
  const g = tf.randomNormal([size]);
  let step = 0;
  // onOff disposes what `run` returns: a fresh scalar here.
  const run = () => {
    adamwUpdate(p, g, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: ++step });
    return tf.scalar(0);
  };
  const pool = onOff((on) => {
    useComposedAdamw(!on);
    setPooledAdamwMinSize(0);
  }, run);
  useComposedAdamw(false);
  const here = onOff((on) => setPooledAdamwMinSize(on ? Infinity : 0), run);
  console.log(`| 2^${Math.log2(size)} | ${pool.off.toFixed(3)} ms | ${pool.on.toFixed(3)} ms | ${here.on.toFixed(3)} ms |`);
  tf.dispose([p, m, v, g]);
}
setPooledAdamwMinSize(undefined);

// Column sums: the host loop (a dataSync copy, then float64 in JS) against the heap kernel.
console.log('\n| column sums | host | heap kernel |\n| --- | --- | --- |');
for (const shape of [[4096, 256], [4096, 1024]] as [number, number][]) {
  const x = tf.randomNormal(shape) as tf.Tensor2D;
  const r = onOff((on) => useHostColumnSums(!on), () => columnSums(x));
  console.log(`| [${shape}] | ${r.off.toFixed(3)} ms | ${r.on.toFixed(3)} ms |`);
  x.dispose();
}
useHostColumnSums(false);
