// Retrieval throughput at N = 128^2, 512^2, 1024^2 (h = 8, k = 16, dk = 128, T = 512) on the default
// engine: forward, and forward + backward (gradients w.r.t. queries and both sub-key tables).
// Usage: pnpm bench [--repeats=7] [--tokens=512] [--backend=auto|wasm|cpu|tensorflow]
// Axes: T tokens, h heads, n = sqrt(N) sub-keys per half, dk key width, k results.
import * as tf from '@tensorflow/tfjs-core';
import { cpus, loadavg } from 'node:os';
import { initBackend, type BackendRequest } from '@peer/backend';
import { ProductKeys, retrieve } from '../src/index.js';
import { readFloats } from '@peer/backend/wasm';
import { rowTopK } from '../src/row-top-k.js';
import { heapRowTopK } from '../src/heap-top-k.js';

function flag(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

const repeats = Number(flag('repeats', '7'));
const tokens = Number(flag('tokens', '512'));
const heads = 8;
const k = 16;
const dimKey = 128;
const sizes = [128, 512, 1024];

const choice = await initBackend({ backend: flag('backend', 'auto') as BackendRequest, log: false });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Timing {
  /** Median wall time, ms. */
  wall: number;
  /** Median CPU time of this process (user + system), ms: the engine runs on one thread, so on a
   * busy machine this tracks the work better than the wall clock. */
  cpu: number;
}

/** Medians of `run`; `run` must read its results back so that the work is done. */
function time(run: () => void): Timing {
  run(); // warm-up: kernel setup, heap growth
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    run();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

interface Row {
  sqrtN: number;
  forward: Timing;
  train: Timing;
}

const rows: Row[] = [];
for (const sqrtN of sizes) {
  const keys = new ProductKeys({ numKeys: sqrtN * sqrtN, heads, dimKey, seed: 1 });
  const queries = tf.randomNormal([tokens, heads, 2 * dimKey], 0, 1, 'float32', 2) as tf.Tensor3D;
  const weights = tf.randomNormal([tokens, heads, k], 0, 1, 'float32', 3);
  const forward = time(() => {
    const r = retrieve(queries, keys, { k });
    r.indices.dataSync();
    r.scores.dataSync();
    tf.dispose([r.indices, r.scores]);
  });
  const train = time(() => {
    const grads = tf.grads((q: tf.Tensor, c1: tf.Tensor, c2: tf.Tensor) => {
      const r = retrieve(q, { subKeys1: c1, subKeys2: c2, heads }, { k });
      return tf.sum(tf.mul(r.scores, weights));
    })([queries, keys.subKeys1, keys.subKeys2]);
    grads.forEach((g) => g.dataSync());
    tf.dispose(grads);
  });
  rows.push({ sqrtN, forward, train });
  tf.dispose([queries, weights]);
  keys.dispose();
}

// The selection alone, in the same run: tf.topk (the engine's TopK kernel) vs rowTopK (JS over the
// scores in place) vs heapRowTopK (the SIMD kernel on the heap that retrieve uses) on the [T * h, n] sub-key scores of one half at n = 1024, and the matMul that
// makes those scores, for scale.
const selectRows = tokens * heads;
const selectWidth = 1024;
const topKTimings = (() => {
  const q = tf.randomNormal([selectRows, dimKey], 0, 1, 'float32', 4) as tf.Tensor2D;
  const table = tf.randomNormal([dimKey, selectWidth], 0, 1, 'float32', 5) as tf.Tensor2D;
  const scores = tf.matMul(q, table);
  const values = new Float32Array(selectRows * k);
  const indices = new Int32Array(selectRows * k);
  const timings = {
    matMul: time(() => tf.tidy(() => void tf.matMul(q, table).dataSync())),
    tfTopK: time(() =>
      tf.tidy(() => {
        const r = tf.topk(scores, k, true);
        r.values.dataSync();
        r.indices.dataSync();
      }),
    ),
    rowTopK: time(() => rowTopK(readFloats(scores), selectRows, selectWidth, k, values, indices)),
    heapRowTopK: time(() => {
      if (!heapRowTopK(scores, selectRows, selectWidth, k, values, indices)) throw new Error('bench: heapRowTopK cannot run on this engine');
    }),
  };
  tf.dispose([q, table, scores]);
  return timings;
})();

const perSecond = (ms: number) => Math.round((tokens * 1000) / ms).toLocaleString('en-US');
const [load1] = loadavg();
console.log(`backend ${choice.backend} (${choice.provider}${choice.fixes.length ? `, fixes: ${choice.fixes.join(', ')}` : ''})`);
console.log(
  `T = ${tokens} tokens, h = ${heads}, k = ${k}, dk = ${dimKey}, medians of ${repeats} runs; a token is h = ${heads} queries; ` +
    `${cpus().length} cores, load average ${load1!.toFixed(1)} at the end`,
);
console.log('wall = elapsed time; cpu = this process\'s CPU time (the engine is single-threaded, so cpu ~ wall on an idle machine)\n');
console.log('| N | forward ms wall / cpu | forward tokens/s (cpu) | fwd+bwd ms wall / cpu | fwd+bwd tokens/s (cpu) |');
console.log('|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.sqrtN}^2 | ${r.forward.wall.toFixed(1)} / ${r.forward.cpu.toFixed(1)} | ${perSecond(r.forward.cpu)} | ` +
      `${r.train.wall.toFixed(1)} / ${r.train.cpu.toFixed(1)} | ${perSecond(r.train.cpu)} |`,
  );
}
const first = rows[0]!;
const last = rows[rows.length - 1]!;
const ratio = (pick: (r: Row) => number) => (pick(last) / pick(first)).toFixed(2);
console.log(
  `\ntime(${last.sqrtN}^2) / time(${first.sqrtN}^2), wall (cpu): forward ${ratio((r) => r.forward.wall)}x (${ratio((r) => r.forward.cpu)}x), ` +
    `fwd+bwd ${ratio((r) => r.train.wall)}x (${ratio((r) => r.train.cpu)}x); keys grow ${(last.sqrtN / first.sqrtN) ** 2}x, ` +
    `sub-keys ${last.sqrtN / first.sqrtN}x; target <= 10x`,
);
console.log(
  `\nselection of one half, [${selectRows}, ${selectWidth}] scores, k = ${k}, ms wall / cpu: ` +
    `tf.topk ${topKTimings.tfTopK.wall.toFixed(1)} / ${topKTimings.tfTopK.cpu.toFixed(1)}, ` +
    `rowTopK (JS) ${topKTimings.rowTopK.wall.toFixed(1)} / ${topKTimings.rowTopK.cpu.toFixed(1)}, ` +
    `heapRowTopK (SIMD, used by retrieve) ${topKTimings.heapRowTopK.wall.toFixed(1)} / ${topKTimings.heapRowTopK.cpu.toFixed(1)} ` +
    `(the matMul [${selectRows}, ${dimKey}] x [${dimKey}, ${selectWidth}] that makes them: ${topKTimings.matMul.wall.toFixed(1)} / ${topKTimings.matMul.cpu.toFixed(1)})`,
);
