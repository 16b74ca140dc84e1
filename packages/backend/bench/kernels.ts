// Benchmarks the wasm kernel fixes against the built-in kernels: `pnpm bench` in packages/backend.
// M = K = N = 1024 for the matMuls; the gather reads I = 32,768 rows of D = 256 from V = 65,536.
// Prints medians as a markdown table (the one recorded in the README).
import * as tf from '@tensorflow/tfjs-core';
import { cpus } from 'node:os';
import { initBackend } from '../src/index.js';

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

const header = ['operation (wasm, 1 thread)', 'built-in', 'with fixes', 'speed-up'];
const lines = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`);
console.log(`Node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, medians of ${REPEATS} (3 for the slow built-in paths)\n`);
console.log(lines.join('\n'));
