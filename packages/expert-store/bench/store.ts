// Benchmarks @peer/expert-store at the paper's scale: `pnpm bench` in packages/expert-store.
//
// N = 1024^2 experts, d = 256: two tables (u, v) of 1 GiB each with lazy Adam state (m, v: 4 GiB),
// all in the tables' wasm arenas. A training step looks up T = 512 tokens x h = 8 heads x k = 16
// experts = 65,536 rows per table. Per step we time: gather of the 65,536 rows into a tfjs tensor
// (wasm engine), accumulation of their gradients into a RowSparseGrad, and the sparse Adam update
// of both tables. Medians over the steps after a warm-up; wall time and CPU time of this process
// (the machine may be shared: CPU time is the one-core cost). Peak RSS is compared with the bytes
// of tables + optimizer state (pre-faulted, so that RSS counts them).
//
// Two lookup patterns: "routed" imitates trained product-key routing (tokens of natural text repeat,
// a token's experts are partly fixed by its identity, expert popularity is log-normal with
// KL(z || uniform) = 1.06 nats, the paper's unevenness at 1M experts), and "uniform" draws every
// row uniformly at random (the worst case for caches: almost no repeats).
//
// Environment: BENCH_STEPS (default 12, of which 2 warm-up), BENCH_N (default 1048576), BENCH_D (256).
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@peer/backend';
import { HostExpertTable, RowSparseGrad, SparseAdam } from '../src/index.js';

const N = Number(process.env.BENCH_N ?? 1024 * 1024);
const D = Number(process.env.BENCH_D ?? 256);
const STEPS = Number(process.env.BENCH_STEPS ?? 12);
const WARMUP = 2;
const TOKENS = 512;
const HEADS = 8;
const K = 16;
const LOOKUPS = TOKENS * HEADS * K;

const GiB = 1024 ** 3;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number, digits = 1) => x.toFixed(digits);

interface Timing {
  wall: number;
  cpu: number;
}
function timed(fn: () => void): Timing {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
}

// A small seeded generator for the index simulation (not the tables' init).
let s0 = 0x9e3779b9;
function rand(): number {
  s0 ^= s0 << 13;
  s0 ^= s0 >>> 17;
  s0 ^= s0 << 5;
  return (s0 >>> 0) / 2 ** 32;
}
function gaussian(): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** Expert popularity: log-normal weights with sigma^2 / 2 = 1.06 nats of KL to uniform. */
function popularityCdf(): Float64Array {
  const sigma = Math.sqrt(2 * 1.06);
  const cdf = new Float64Array(N);
  let acc = 0;
  for (let i = 0; i < N; i++) {
    acc += Math.exp(sigma * gaussian());
    cdf[i] = acc;
  }
  for (let i = 0; i < N; i++) cdf[i]! /= acc;
  return cdf;
}
function drawExpert(cdf: Float64Array): number {
  const u = rand();
  let lo = 0;
  let hi = N - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One step's 65,536 lookups under trained-like routing. */
function routedLookups(cdf: Float64Array, preferred: Map<number, Int32Array>): Int32Array {
  const vocab = 32768;
  const out = new Int32Array(LOOKUPS);
  let o = 0;
  for (let t = 0; t < TOKENS; t++) {
    // Zipf(1.07) token identity by inverse transform on a continuous approximation.
    const type = Math.min(vocab - 1, Math.floor(Math.exp(rand() * Math.log(vocab)) - 1));
    for (let h = 0; h < HEADS; h++) {
      const key = type * HEADS + h;
      let fixed = preferred.get(key);
      if (!fixed) {
        fixed = Int32Array.from({ length: K }, () => drawExpert(cdf));
        preferred.set(key, fixed);
      }
      const chosen = new Set<number>();
      for (let k = 0; k < K; k++) {
        // Half of a head's experts follow the token's identity, half its context.
        let e = rand() < 0.5 ? fixed[k]! : drawExpert(cdf);
        while (chosen.has(e)) e = drawExpert(cdf);
        chosen.add(e);
        out[o++] = e;
      }
    }
  }
  return out;
}

function uniformLookups(): Int32Array {
  return Int32Array.from({ length: LOOKUPS }, () => Math.floor(rand() * N));
}

await initBackend({ backend: 'wasm', log: false });

const initTimes: number[] = [];
const tables = ['u', 'v'].map((name, i) => {
  let table!: HostExpertTable;
  initTimes.push(timed(() => (table = new HostExpertTable({ rows: N, dim: D, init: { kind: 'normal', std: 1 / Math.sqrt(D) }, seed: 1 + i, name }))).wall);
  return table;
});
const adam = new SparseAdam({ lr: 1e-3, weightDecay: 0.01 }, tables);
for (const t of tables) {
  const st = adam.stateOf(t)!;
  st.m.fill(0); // pre-fault: RSS now counts the state
  st.v.fill(0);
  st.steps.fill(0);
}
const grads = tables.map((t) => new RowSparseGrad(t));
const stateBytes = tables.reduce((sum, t) => sum + t.bytes + 2 * t.bytes + t.rows * 4, 0);
const rowGrads = Float32Array.from({ length: LOOKUPS * D }, () => (rand() - 0.5) * 1e-2);

const cdf = popularityCdf();
const preferred = new Map<number, Int32Array>();
const results: string[][] = [];
for (const pattern of ['routed', 'uniform'] as const) {
  const rec: Record<string, Timing[]> = { gather: [], accumulate: [], adam: [] };
  const unique: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const lookups = tables.map(() => (pattern === 'routed' ? routedLookups(cdf, preferred) : uniformLookups()));
    const gather = timed(() => {
      for (let i = 0; i < 2; i++) tables[i]!.gather(lookups[i]!).dispose();
    });
    const accumulate = timed(() => {
      for (let i = 0; i < 2; i++) grads[i]!.accumulate(lookups[i]!, rowGrads);
    });
    unique.push((grads[0]!.size + grads[1]!.size) / 2);
    const update = timed(() => {
      for (let i = 0; i < 2; i++) adam.step(tables[i]!, grads[i]!);
    });
    if (step >= WARMUP) {
      rec.gather!.push(gather);
      rec.accumulate!.push(accumulate);
      rec.adam!.push(update);
    }
  }
  const m = (key: string, f: 'wall' | 'cpu') => median(rec[key]!.map((x) => x[f]));
  results.push([
    pattern,
    fmt(median(unique), 0),
    `${fmt(m('gather', 'wall'))} / ${fmt(m('gather', 'cpu'))}`,
    `${fmt(m('accumulate', 'wall'))} / ${fmt(m('accumulate', 'cpu'))}`,
    `${fmt(m('adam', 'wall'))} / ${fmt(m('adam', 'cpu'))}`,
  ]);
}
if (tf.memory().numTensors !== 0) throw new Error(`leaked ${tf.memory().numTensors} tensors`);

const peakRss = process.resourceUsage().maxRSS * 1024;
console.log(`N = ${N}, d = ${D}, ${LOOKUPS} lookups per table per step (${TOKENS} tokens x ${HEADS} heads x ${K}), ${STEPS - WARMUP} timed steps (median), backend ${tf.getBackend()}, tables in ${tables[0]!.backingKind} memory`);
console.log(`table init (normal, seeded): ${initTimes.map((t) => fmt(t / 1000, 2)).join(' s, ')} s\n`);
console.log('| lookups | unique rows / table | gather u + v, ms (wall / cpu) | accumulate u + v, ms | sparse Adam u + v, ms |');
console.log('|---|---|---|---|---|');
for (const r of results) console.log(`| ${r.join(' | ')} |`);
console.log(
  `\npeak RSS ${fmt(peakRss / GiB, 2)} GiB; tables + Adam state ${fmt(stateBytes / GiB, 2)} GiB; ratio ${fmt(peakRss / stateBytes, 3)} (target <= 1.25)`,
);
