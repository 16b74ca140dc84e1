// Where splitting a retrieval kernel over the kernel pool starts to pay: the median time of one pass
// of top-k rows (W = 1024, k = 16), the score backward (k = 16, dk = 128, h = 8) and the query
// BatchNorm column sums (F = 2048) at growing sizes, on 1 and 2 threads of the threaded wasm engine.
// Sanity only on a busy machine: the numbers are not for the docs unless the machine is idle.
// Usage: pnpm tsx bench/kernel-threads.ts [--repeats=41]
// Axes: Q query rows, W row width, T tokens, F query features.
import * as tf from '@tensorflow/tfjs-core';
import { loadavg } from 'node:os';
import { initBackend } from '@peer/backend';
import { setKernelThreads } from '@peer/backend/wasm';
import { heapRowTopK } from '../src/heap-top-k.js';
import { QueryNormKernels } from '../src/query-norm-kernels.js';
import { scoreGradientsOnHeap } from '../src/score-grad-kernel.js';

const repeats = Number(process.argv.find((a) => a.startsWith('--repeats='))?.slice(10) ?? 41);
await initBackend({ backend: 'wasm', threads: 2, log: false });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Median µs of `fn` at 1 and 2 threads: blocks of runs at each count in turn (a pool starts per block). */
function time(fn: () => void): [number, number] {
  const t: [number[], number[]] = [[], []];
  const blocks = 5;
  for (let b = 0; b < blocks; b++) {
    for (const threads of [1, 2] as const) {
      setKernelThreads(threads);
      for (let w = 0; w < 2; w++) fn();
      for (let i = 0; i < Math.ceil(repeats / blocks); i++) {
        const start = process.hrtime.bigint();
        fn();
        (threads === 1 ? t[0] : t[1]).push(Number(process.hrtime.bigint() - start) / 1e3);
      }
    }
  }
  return [median(t[0]), median(t[1])];
}

function report(what: string, [one, two]: [number, number]): void {
  console.log(`${what.padEnd(36)} 1 thread ${one.toFixed(1).padStart(8)} µs   2 threads ${two.toFixed(1).padStart(8)} µs   ${(one / two).toFixed(2)}x`);
}

console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}, ${repeats} alternating runs`);
const [width, k] = [1024, 16];
for (const rows of [16, 32, 64, 128, 256, 1024, 4096]) {
  const scores = tf.randomNormal([rows, width]);
  const values = new Float32Array(rows * k);
  const indices = new Int32Array(rows * k);
  report(`top-k Q=${rows}`, time(() => void heapRowTopK(scores, rows, width, k, values, indices)));
  scores.dispose();
}
const [h, dk, n] = [8, 128, 1024];
for (const tokens of [4, 8, 16, 32, 64, 512]) {
  const rows = tokens * h;
  const q = tf.randomNormal([tokens, h, 2 * dk]);
  const c = [tf.randomNormal([h, n, dk]), tf.randomNormal([h, n, dk])] as [tf.Tensor, tf.Tensor];
  const ids = [tf.randomUniform([tokens, h, k], 0, n, 'int32'), tf.randomUniform([tokens, h, k], 0, n, 'int32')] as [tf.Tensor, tf.Tensor];
  const dy = tf.randomNormal([tokens, h, k]);
  report(`score backward Q=${rows}`, time(() => tf.dispose(scoreGradientsOnHeap({ queries: q, subKeys: c, ids, heads: h, headRows: n, dy, k, dimKey: dk }))));
  tf.dispose([q, ...c, ...ids, dy]);
}
const f = 2048;
for (const t of [4, 8, 16, 32, 64, 512]) {
  const kernels = new QueryNormKernels();
  kernels.reset();
  const a = kernels.alloc(t * f);
  const out = kernels.alloc(f);
  kernels.view(a).fill(1);
  report(`BatchNorm column sums T=${t} (${t * f} el.)`, time(() => kernels.colSum(a, out, t, f)));
}
setKernelThreads(1);
