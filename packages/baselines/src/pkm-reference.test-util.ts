// Test-only: a plain float64 reference of ProductKeyMemory (brute force over all N full keys), and
// inputs whose retrieval float32 rounding cannot change, for pkm.test.ts and pkm.webgpu.test.ts.
// Axes: T tokens, D model width, F = h * 2 * dk query features, h heads, k slots per head, N memories,
// dk key width.
import type * as tf from '@tensorflow/tfjs-core';
import type { TestRng } from '@peer/test-utils';
import { hostValues } from './pkm-host.test-util.js';
import type { ProductKeyMemory } from './pkm.js';

export interface ReferencePkm {
  dim: number;
  memories: number;
  heads: number;
  topK: number;
  dimKey: number;
  shared: boolean;
  eps: number;
  wq: Float64Array; // [D, F]
  norm: { gamma: Float64Array; beta: Float64Array; mean: Float64Array; variance: Float64Array } | null;
  c1: Float64Array; // [H', S, dk]
  c2: Float64Array;
  values: Float64Array; // [N, D]
}

const f64 = (t: tf.Tensor | ArrayLike<number>): Float64Array => Float64Array.from('dataSync' in t ? t.dataSync() : t);

export function referenceOf(layer: ProductKeyMemory): ReferencePkm {
  const c = layer.config;
  const n = layer.queryNorm;
  return {
    dim: c.dim,
    memories: c.memories,
    heads: c.heads,
    topK: c.topK,
    dimKey: c.dimKey,
    shared: c.sharedKeys,
    eps: c.normEps,
    wq: f64(layer.queryWeight),
    norm: n ? { gamma: f64(n.weight), beta: f64(n.bias), mean: f64(n.runningMean), variance: f64(n.runningVar) } : null,
    c1: f64(layer.keys.subKeys1),
    c2: f64(layer.keys.subKeys2),
    values: layer.values.storage === 'float32' ? f64(hostValues(layer).data) : Float64Array.from({ length: c.memories * c.dim }, (_, i) => hostValues(layer).row(Math.floor(i / c.dim))[i % c.dim]!),
  };
}

export function referencePkm(m: ReferencePkm, x: ArrayLike<number>, tokens: number, training: boolean) {
  const { dim: D, heads: h, topK: k, dimKey: dk, memories: N } = m;
  const F = h * 2 * dk;
  const S = Math.round(Math.sqrt(N));
  const q = new Float64Array(tokens * F);
  for (let t = 0; t < tokens; t++)
    for (let f = 0; f < F; f++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += x[t * D + i]! * m.wq[i * F + f]!;
      q[t * F + f] = s;
    }
  const batchMean = new Float64Array(F);
  const batchVar = new Float64Array(F);
  if (m.norm) {
    for (let f = 0; f < F; f++) {
      let mean = 0;
      for (let t = 0; t < tokens; t++) mean += q[t * F + f]!;
      mean /= tokens;
      let v = 0;
      for (let t = 0; t < tokens; t++) v += (q[t * F + f]! - mean) ** 2;
      v /= tokens;
      batchMean[f] = mean;
      batchVar[f] = v;
      const [mu, va] = training ? [mean, v] : [m.norm.mean[f]!, m.norm.variance[f]!];
      for (let t = 0; t < tokens; t++) q[t * F + f] = ((q[t * F + f]! - mu) / Math.sqrt(va + m.eps)) * m.norm.gamma[f]! + m.norm.beta[f]!;
    }
  }
  const y = new Float64Array(tokens * D);
  const indices: number[] = [];
  const weights: number[] = [];
  // The closest call of the retrieval: the smallest gap between consecutive scores among the best
  // k + 1 of any (t, head), and the largest |score| (the scale of the float32 scores' error).
  let minGap = Infinity;
  let scoreScale = 0;
  for (let t = 0; t < tokens; t++) {
    for (let head = 0; head < h; head++) {
      const set = m.shared ? 0 : head;
      const scores: [number, number][] = [];
      for (let a = 0; a < S; a++)
        for (let b = 0; b < S; b++) {
          let s = 0;
          for (let j = 0; j < dk; j++) {
            s += q[t * F + head * 2 * dk + j]! * m.c1[(set * S + a) * dk + j]!;
            s += q[t * F + head * 2 * dk + dk + j]! * m.c2[(set * S + b) * dk + j]!;
          }
          scores.push([s, a * S + b]);
        }
      scores.sort((u, v) => v[0] - u[0] || u[1] - v[1]);
      for (let j = 0; j < Math.min(k, scores.length - 1); j++) minGap = Math.min(minGap, scores[j]![0] - scores[j + 1]![0]);
      for (const [sc] of scores) scoreScale = Math.max(scoreScale, Math.abs(sc));
      const top = scores.slice(0, k);
      const max = top[0]![0];
      const z = top.reduce((acc, [s]) => acc + Math.exp(s - max), 0);
      for (const [s, slot] of top) {
        const w = Math.exp(s - max) / z;
        indices.push(slot);
        weights.push(w);
        for (let i = 0; i < D; i++) y[t * D + i]! += w * m.values[slot * D + i]!;
      }
    }
  }
  return { y, indices, weights, batchMean, batchVar, minGap, scoreScale };
}

/**
 * Inputs [T*D] whose top-k selection float32 rounding cannot change, so that the float32 layer
 * retrieves the float64 reference's slots: consecutive scores among the best k + 1 of every (t, head)
 * differ by more than 1e-4 of the largest |score|, far above the float32 error of the query
 * projection, BatchNorm and score sums (a few u = 2^-24 relative per step, times the feature counts).
 */
export function decisiveInputs(m: ReferencePkm, rng: TestRng, tokens: number, training: boolean): Float64Array {
  for (let attempt = 0; attempt < 100; attempt++) {
    const x = rng.normals(tokens * m.dim);
    const ref = referencePkm(m, x, tokens, training);
    if (ref.minGap > 1e-4 * Math.max(1, ref.scoreScale)) return x;
  }
  throw new Error(`no input with a decisive top-k found (seed ${rng.seed})`);
}
