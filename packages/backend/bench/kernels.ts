// Benchmarks the wasm kernel fixes against the built-in kernels: `pnpm bench` in packages/backend.
// M = K = N = 1024 for the 2-D matMuls; batched ones are Bt x [M, K] x [K, N] (attention-like: Bt =
// B * heads, M = N = S, K = head width); the gather reads I = 32,768 rows of D = 256 from V = 65,536.
// Prints medians as a markdown table (the one recorded in the README).
import * as tf from '@tensorflow/tfjs-core';
import { cpus } from 'node:os';
import { initBackend } from '../src/index.js';
import { prefersPerBatch } from '../src/wasm/per-batch-mat-mul.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Median wall time in ms of `fn` after one warm-up. Wasm kernels run synchronously, so an op has
 * finished when it returns: outputs are disposed, not read back (a read would add a heap copy).
 */
function time(fn: () => void, repeats = REPEATS): number {
  fn();
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

async function withFixes<T>(on: boolean, f: () => T): Promise<T> {
  await initBackend({ backend: 'wasm', wasmFixes: on, log: false });
  return f();
}

const rows: string[][] = [];
const fmt = (x: number, digits = 1) => x.toFixed(digits);

// matMul 1024^3, every transpose combination.
const n = 1024;
const flops = 2 * n ** 3;
await initBackend({ backend: 'wasm', log: false });
const a = tf.randomNormal([n, n]);
const b = tf.randomNormal([n, n]);
for (const [tA, tB] of [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const) {
  const run = () => tf.matMul(a, b, tA, tB).dispose();
  // The built-in transposeA path is slow (seconds per product): fewer repeats there.
  const builtIn = await withFixes(false, () => time(run, tA ? 3 : REPEATS));
  const fixed = await withFixes(true, () => time(run));
  const gf = (ms: number) => flops / (ms * 1e6);
  rows.push([
    `matMul 1024^3 ${tA ? 'transposeA' : ''}${tA && tB ? ' + ' : ''}${tB ? 'transposeB' : ''}${!tA && !tB ? 'plain' : ''}`,
    `${fmt(builtIn)} ms (${fmt(gf(builtIn))} GFLOP/s)`,
    `${fmt(fixed)} ms (${fmt(gf(fixed))} GFLOP/s)`,
    `${fmt(builtIn / fixed)}x`,
  ]);
}

// A dense layer's forward + backward: y = x W, dL/dx = dy W^T, dL/dW = x^T dy.
{
  const x = tf.randomNormal([n, n]);
  const w = tf.randomNormal([n, n]);
  const step = () =>
    tf.tidy(() => {
      tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.matMul(xx, ww)))([x, w]);
    });
  const builtIn = await withFixes(false, () => time(step, 3));
  const fixed = await withFixes(true, () => time(step));
  rows.push(['dense 1024x1024x1024 forward + backward', `${fmt(builtIn)} ms`, `${fmt(fixed)} ms`, `${fmt(builtIn / fixed)}x`]);
  tf.dispose([x, w]);
}
{
  const transpose = () => tf.transpose(a).dispose();
  const builtIn = await withFixes(false, () => time(transpose, 10));
  const fixed = await withFixes(true, () => time(transpose, 10));
  rows.push(['transpose 1024 x 1024', `${fmt(builtIn)} ms`, `${fmt(fixed)} ms`, `${fmt(builtIn / fixed)}x`]);
}
tf.dispose([a, b]);

// Gather 32,768 rows x 256 from a 65,536 x 256 table, and its forward + backward.
{
  const [v, d, count] = [65_536, 256, 32_768];
  const table = tf.randomNormal([v, d]);
  const idx = tf.randomUniformInt([count], 0, v);
  const gather = () => tf.gather(table, idx).dispose();
  const builtIn = await withFixes(false, () => time(gather, 10));
  const fixed = await withFixes(true, () => time(gather, 10));
  rows.push([`gather ${count} x ${d} from ${v} x ${d}`, `${fmt(builtIn)} ms`, `${fmt(fixed)} ms`, `${fmt(builtIn / fixed)}x`]);

  const dy = tf.randomNormal([count, d]);
  const step = () => tf.tidy(() => void tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, idx), dy)))(table));
  const builtInStep = await withFixes(false, () => {
    try {
      return `${fmt(time(step, 3))} ms`;
    } catch (err) {
      return `throws (${(err as Error).message.split('\n')[0]!.slice(0, 60)})`;
    }
  });
  const fixedStep = await withFixes(true, () => time(step, 10));
  rows.push([`gather forward + backward (dense ${v} x ${d} gradient)`, builtInStep, `${fmt(fixedStep)} ms`, '-']);
  tf.dispose([table, idx, dy]);
}

/** One table row: the median of `fn` with the built-in kernels and with the fixes, in this process. */
async function compare(label: string, fn: () => void, opts: { builtInRepeats?: number; repeats?: number; flop?: number } = {}): Promise<void> {
  const { repeats = REPEATS, builtInRepeats = repeats, flop } = opts;
  const builtIn = await withFixes(false, () => time(fn, builtInRepeats));
  const fixed = await withFixes(true, () => time(fn, repeats));
  const rate = (ms: number) => (flop ? ` (${fmt(flop / (ms * 1e6))} GFLOP/s)` : '');
  rows.push([label, `${fmt(builtIn, 2)} ms${rate(builtIn)}`, `${fmt(fixed, 2)} ms${rate(fixed)}`, `${fmt(builtIn / fixed)}x`]);
}

// Batched matMuls: attention-like products (scores q k^T, values p v) and a wide one. The built-in
// kernel runs any product with more than one batch in a naive loop: fewer repeats there.
for (const [bt, m, k, nn, tB] of [
  [8, 512, 128, 1024, false],
  [64, 256, 64, 256, false],
  [64, 256, 256, 64, false],
  [64, 256, 64, 256, true],
] as const) {
  const a = tf.randomNormal([bt, m, k]);
  const b = tf.randomNormal(tB ? [bt, nn, k] : [bt, k, nn]);
  await compare(
    `matMul ${bt} x [${m},${k}]x[${k},${nn}]${tB ? ' transposeB' : ''}`,
    () => tf.matMul(a, b, false, tB).dispose(),
    { builtInRepeats: 3, flop: 2 * bt * m * k * nn },
  );
  tf.dispose([a, b]);
}
{
  // The same 8 products as separate 2-D matMuls on the fixed engine: the rate the batched path should
  // reach. Each repeat gets fresh b tensors (untimed): XNNPACK caches its packed copy of a b it has seen.
  await initBackend({ backend: 'wasm', log: false });
  const as = Array.from({ length: 8 }, () => tf.randomNormal([512, 128]));
  const ms: number[] = [];
  for (let r = 0; r <= REPEATS; r++) {
    const bs = Array.from({ length: 8 }, () => tf.randomNormal([128, 1024]));
    const t0 = performance.now();
    as.forEach((a, i) => tf.matMul(a, bs[i]!).dispose());
    if (r > 0) ms.push(performance.now() - t0);
    tf.dispose(bs);
  }
  const mid = median(ms);
  rows.push(['(8 separate 2-D matMuls [512,128]x[128,1024], for reference)', '-', `${fmt(mid, 2)} ms (${fmt((2 * 8 * 512 * 128 * 1024) / (mid * 1e6))} GFLOP/s)`, '-']);
  tf.dispose(as);
}
// Tiny batched products around the per-batch threshold ((M - 4) K N >= 2048): 8^3 stays on the
// built-in loop (per-product overhead would dominate), 16^3 just crosses over.
for (const [bt, e] of [
  [512, 8],
  [256, 16],
] as const) {
  const a = tf.randomNormal([bt, e, e]);
  const b = tf.randomNormal([bt, e, e]);
  const path = prefersPerBatch([bt, e, e], [bt, e, e]) ? 'per-batch' : 'built-in loop kept';
  await compare(`matMul ${bt} x [${e},${e}]x[${e},${e}] (tiny: ${path})`, () => tf.matMul(a, b).dispose(), { repeats: 10 });
  tf.dispose([a, b]);
}
// XNNPACK's operator cache on b (engine-notes; mat-mul-operator-cache.ts). The common case in
// training: a weight as b with the same shape every call (the fixed kernel adds one WeakMap lookup).
// Then one b's data under two shapes, alternating: with the fixes each call evicts the stale
// operator and packs b again; the built-in kernel reuses the stale operator (wrong values, or a
// heap overflow in the other order), so it is not run. Two separate b tensors show the cached cost.
{
  const calls = 100;
  const a = tf.randomNormal([64, 256]);
  const w = tf.randomNormal([256, 256]);
  await compare(`matMul [64,256]x[256,256], same b every call (cached operator), ${calls} calls`, () => {
    for (let i = 0; i < calls; i++) tf.matMul(a, w).dispose();
  }, { repeats: 10 });
  await initBackend({ backend: 'wasm', log: false });
  const aWide = tf.randomNormal([64, 128]);
  const wWide = tf.reshape(w, [128, 512]);
  const other = tf.randomNormal([128, 512]);
  const alternate = (b2: tf.Tensor) => () => {
    for (let i = 0; i < calls / 2; i++) {
      tf.matMul(a, w).dispose();
      tf.matMul(aWide, b2).dispose();
    }
  };
  const evicting = time(alternate(wWide), 10);
  const separate = time(alternate(other), 10);
  rows.push([`matMul ${calls} calls alternating one b's data as [256,256] / [128,512] (evicts, repacks)`, 'wrong values (stale operator)', `${fmt(evicting, 2)} ms`, '-']);
  rows.push([`(the same with two separate b tensors, both cached)`, '-', `${fmt(separate, 2)} ms`, '-']);
  tf.dispose([a, w, aWide, wWide, other]);
}
{
  // Attention forward + backward through batched matMuls: B*heads = 64, S = 256, head width 64.
  const [g, s, e] = [64, 256, 64];
  const q = tf.randomNormal([g, s, e]);
  const kk = tf.randomNormal([g, s, e]);
  const v = tf.randomNormal([g, s, e]);
  const step = () =>
    tf.tidy(() => {
      tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.matMul(tf.softmax(tf.matMul(x, y, false, true)), z)))([q, kk, v]);
    });
  await compare(`attention forward + backward ${g} x [${s},${e}] (matMul, softmax)`, step, { builtInRepeats: 2 });
  tf.dispose([q, kk, v]);
}

// Slices of a 4096 x 512 table (8 MiB): the built-in Slice copies the whole input for every slice.
{
  const x = tf.randomNormal([4096, 512]);
  await compare('slice: 16 row blocks [256, 512] of [4096, 512]', () => {
    for (let i = 0; i < 16; i++) tf.slice(x, [i * 256, 0], [256, 512]).dispose();
  });
  await compare('slice: 16 column blocks [4096, 32] of [4096, 512]', () => {
    for (let i = 0; i < 16; i++) tf.slice(x, [0, i * 32], [4096, 32]).dispose();
  });
  const x3 = tf.reshape(x, [64, 64, 512]);
  await compare('unstack [64, 64, 512] along axis 0', () => tf.dispose(tf.unstack(x3)));
  await compare('split [4096, 512] into 8 along axis 1', () => tf.dispose(tf.split(x, 8, 1)));
  await compare('stridedSlice [4096, 512] every 2nd row and column', () => tf.stridedSlice(x, [0, 0], [4096, 512], [2, 2]).dispose());
  tf.dispose([x, x3]);
}

// Reductions over the leading axis (bias gradients are column sums).
for (const shape of [
  [1024, 1024],
  [8192, 256],
] as const) {
  const x = tf.randomNormal([...shape]);
  await compare(`sum over axis 0 of [${shape}]`, () => tf.sum(x, 0).dispose(), { repeats: 10 });
  await compare(`max over axis 0 of [${shape}]`, () => tf.max(x, 0).dispose(), { repeats: 10 });
  x.dispose();
}

// OneHot: the built-in C kernel is right only for int32 outputs; compare there.
{
  const idx = tf.randomUniformInt([32_768], 0, 256);
  await compare('oneHot 32768 indices, depth 256, int32', () => tf.oneHot(idx, 256).dispose(), { repeats: 10 });
  idx.dispose();
}

const header = ['operation (wasm, 1 thread)', 'built-in', 'with fixes', 'speed-up'];
const lines = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`);
console.log(`Node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, medians of ${REPEATS} (2-3 for the slow built-in paths, 10 for fast ones)\n`);
console.log(lines.join('\n'));
