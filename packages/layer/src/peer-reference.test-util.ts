// A direct float64 PEER layer for tests, written as plainly as the spec: brute-force top-k over all
// N full keys, BatchNorm with batch statistics, softmax, GELU through a float64 erf, the mixture.
// Not exported by the package.
//
// Axes: T tokens, D model width, h heads, k experts per head, dk sub-key width, n = sqrt(N) sub-keys
// per half, N experts,
// F = h * 2 * dk query features in (head, half, dk) order, H' key sets (1 shared, else h).

import { activation64 } from '@peer/test-utils';

export { activation64, erf64 } from '@peer/test-utils';

export interface ReferenceParams {
  /** [D, F] */
  wq: Float64Array;
  /** [F] (ignored for queryNorm 'none') */
  gamma: Float64Array;
  beta: Float64Array;
  /** [F], used in evaluation mode */
  runningMean: Float64Array;
  runningVar: Float64Array;
  /** [H', n, dk] */
  subKeys1: Float64Array;
  subKeys2: Float64Array;
  /** [rows, D] */
  down: Float64Array;
  up: Float64Array;
}

export interface ReferenceConfig {
  dim: number;
  heads: number;
  topK: number;
  dimKey: number;
  subKeys: number;
  sharedKeys: boolean;
  separateExpertsPerHead: boolean;
  scores: 'softmax' | 'relu';
  queryNorm: 'batch' | 'layer' | 'none';
  activation: 'gelu' | 'gelu-tanh' | 'relu';
  normEps: number;
  numExperts: number;
}

export interface ReferenceOutput {
  /** [T, D] */
  y: Float64Array;
  /** Expert rows [T, h, k] (head offsets included with separate pools), best first. */
  indices: Int32Array;
  /** Router weights [T, h, k]. */
  weights: Float64Array;
  /** Normalized queries [T, F]. */
  queries: Float64Array;
  /**
   * The smallest gap, over tokens and heads, between the k-th and the (k+1)-th best full score: near
   * 0, float32 rounding may pick a different k-th expert (the layer is discontinuous there).
   */
  boundaryGap: number;
  /** Full scores [T, h, k] of the selected experts, best first. */
  scores: Float64Array;
  /** Expert pre-activations down[row] . x [T, h, k] (a ReLU expert has its kink at 0). */
  preActivations: Float64Array;
}

/** The PEER layer in float64. `training` selects batch statistics for queryNorm 'batch'. */
export function referencePeer(x: Float64Array, tokens: number, p: ReferenceParams, c: ReferenceConfig, training: boolean): ReferenceOutput {
  const { dim: D, heads: h, topK: k, dimKey: dk, subKeys: sqrtN } = c;
  const f = h * 2 * dk;
  // q = x Wq
  const q = new Float64Array(tokens * f);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < f; j++) {
      let acc = 0;
      for (let i = 0; i < D; i++) acc += x[t * D + i]! * p.wq[i * f + j]!;
      q[t * f + j] = acc;
    }
  }
  // Query normalization.
  if (c.queryNorm === 'batch') {
    for (let j = 0; j < f; j++) {
      let mean = 0;
      let variance = 0;
      if (training) {
        for (let t = 0; t < tokens; t++) mean += q[t * f + j]!;
        mean /= tokens;
        for (let t = 0; t < tokens; t++) variance += (q[t * f + j]! - mean) ** 2;
        variance /= tokens;
      } else {
        mean = p.runningMean[j]!;
        variance = p.runningVar[j]!;
      }
      for (let t = 0; t < tokens; t++) {
        q[t * f + j] = ((q[t * f + j]! - mean) / Math.sqrt(variance + c.normEps)) * p.gamma[j]! + p.beta[j]!;
      }
    }
  } else if (c.queryNorm === 'layer') {
    for (let t = 0; t < tokens; t++) {
      let mean = 0;
      for (let j = 0; j < f; j++) mean += q[t * f + j]!;
      mean /= f;
      let variance = 0;
      for (let j = 0; j < f; j++) variance += (q[t * f + j]! - mean) ** 2;
      variance /= f;
      for (let j = 0; j < f; j++) q[t * f + j] = ((q[t * f + j]! - mean) / Math.sqrt(variance + c.normEps)) * p.gamma[j]! + p.beta[j]!;
    }
  }
  const N = sqrtN * sqrtN;
  const y = new Float64Array(tokens * D);
  const indices = new Int32Array(tokens * h * k);
  const weights = new Float64Array(tokens * h * k);
  const selectedScores = new Float64Array(tokens * h * k);
  const preActivations = new Float64Array(tokens * h * k);
  const full = new Float64Array(N);
  const order = new Int32Array(N);
  let boundaryGap = Infinity;
  for (let t = 0; t < tokens; t++) {
    for (let head = 0; head < h; head++) {
      const set = c.sharedKeys ? 0 : head;
      const qo = t * f + head * 2 * dk;
      // Every full key [C1_a ; C2_b] of expert a*n + b, scored directly.
      for (let a = 0; a < sqrtN; a++) {
        for (let b = 0; b < sqrtN; b++) {
          let acc = 0;
          for (let j = 0; j < dk; j++) {
            acc += q[qo + j]! * p.subKeys1[(set * sqrtN + a) * dk + j]!;
            acc += q[qo + dk + j]! * p.subKeys2[(set * sqrtN + b) * dk + j]!;
          }
          full[a * sqrtN + b] = acc;
        }
      }
      for (let i = 0; i < N; i++) order[i] = i;
      order.sort((i1, i2) => full[i2]! - full[i1]!);
      const top = Array.from(order.subarray(0, k));
      if (k < N) boundaryGap = Math.min(boundaryGap, full[order[k - 1]!]! - full[order[k]!]!);
      const scores = top.map((e) => full[e]!);
      let g: number[];
      if (c.scores === 'softmax') {
        const m = Math.max(...scores);
        const ex = scores.map((v) => Math.exp(v - m));
        const z = ex.reduce((u, v) => u + v, 0);
        g = ex.map((v) => v / z);
      } else {
        g = scores.map((v) => (v > 0 ? v : 0));
      }
      for (let i = 0; i < k; i++) {
        const row = top[i]! + (c.separateExpertsPerHead ? head * N : 0);
        indices[(t * h + head) * k + i] = row;
        weights[(t * h + head) * k + i] = g[i]!;
        selectedScores[(t * h + head) * k + i] = scores[i]!;
        let a = 0;
        for (let j = 0; j < D; j++) a += p.down[row * D + j]! * x[t * D + j]!;
        preActivations[(t * h + head) * k + i] = a;
        const w = g[i]! * activation64(a, c.activation);
        for (let j = 0; j < D; j++) y[t * D + j]! += w * p.up[row * D + j]!;
      }
    }
  }
  return { y, indices, weights, queries: q, boundaryGap, scores: selectedScores, preActivations };
}

/**
 * The position of the first difference between a layer's selection `got` (expert rows [T, h, k],
 * best first) and the reference's, or -1. The rows of each (t, head) must be the reference's; their
 * order may differ only between experts whose float64 scores lie within `tieTol` of each other
 * (float32 rounding may order those either way).
 */
export function selectionMismatch(got: ArrayLike<number>, ref: ReferenceOutput, k: number, tieTol: number): number {
  for (let row = 0; row < ref.indices.length / k; row++) {
    const mine = Array.from({ length: k }, (_, j) => got[row * k + j]!);
    const theirs = Array.from(ref.indices.subarray(row * k, (row + 1) * k));
    for (let j = 0; j < k; j++) {
      if (mine[j] === theirs[j]) continue;
      const at = theirs.indexOf(mine[j]!);
      if (at < 0 || Math.abs(ref.scores[row * k + at]! - ref.scores[row * k + j]!) > tieTol) return row * k + j;
    }
  }
  return -1;
}

/**
 * PEER-pytorch's forward on its own tensors, in float64, brute force: queries = BN(x W^T) split as
 * (p h d), sim over keys[h, i, p], full score of expert i*n + j = sim0[i] + sim1[j], top-k, softmax,
 * gelu(x . w_down[e]) * g * w_up[e].
 */
export function pytorchReference(
  arrays: Map<string, { shape: number[]; data: ArrayLike<number> }>,
  x: Float64Array,
  tokens: number,
  topK: number,
  training: boolean,
): { y: Float64Array; indices: number[]; boundaryGap: number } {
  const get = (n: string) => Float64Array.from(arrays.get(n)!.data);
  const [h, sqrtN, , dk] = arrays.get('keys')!.shape as [number, number, number, number];
  const [rows, D] = arrays.get('weight_down_embed.weight')!.shape as [number, number];
  const f = 2 * h * dk;
  const w = get('to_queries.0.weight');
  const keys = get('keys');
  const down = get('weight_down_embed.weight');
  const up = get('weight_up_embed.weight');
  const q = new Float64Array(tokens * f);
  for (let t = 0; t < tokens; t++) for (let o = 0; o < f; o++) for (let i = 0; i < D; i++) q[t * f + o]! += w[o * D + i]! * x[t * D + i]!;
  if (arrays.has('query_norm.running_mean')) {
    const [gamma, beta, rm, rv] = ['weight', 'bias', 'running_mean', 'running_var'].map((n) => get(`query_norm.${n}`));
    for (let o = 0; o < f; o++) {
      let mean = rm![o]!;
      let variance = rv![o]!;
      if (training) {
        mean = 0;
        for (let t = 0; t < tokens; t++) mean += q[t * f + o]! / tokens;
        variance = 0;
        for (let t = 0; t < tokens; t++) variance += (q[t * f + o]! - mean) ** 2 / tokens;
      }
      for (let t = 0; t < tokens; t++) q[t * f + o] = ((q[t * f + o]! - mean) / Math.sqrt(variance + 1e-5)) * gamma![o]! + beta![o]!;
    }
  }
  const N = sqrtN * sqrtN;
  const y = new Float64Array(tokens * D);
  const indices: number[] = [];
  // As referencePeer's: the smallest gap between the k-th and (k+1)-th best full score.
  let boundaryGap = Infinity;
  for (let t = 0; t < tokens; t++) {
    for (let head = 0; head < h; head++) {
      // queries[p, t, head, :] = q[t, p*h*dk + head*dk + :]
      const sim = [0, 1].map((p) =>
        Array.from({ length: sqrtN }, (_, i) => {
          let acc = 0;
          for (let j = 0; j < dk; j++) acc += q[t * f + p * h * dk + head * dk + j]! * keys[((head * sqrtN + i) * 2 + p) * dk + j]!;
          return acc;
        }),
      );
      const all = Array.from({ length: N }, (_, e) => ({ e, score: sim[0]![Math.floor(e / sqrtN)]! + sim[1]![e % sqrtN]! }));
      all.sort((a, b) => b.score - a.score);
      if (topK < N) boundaryGap = Math.min(boundaryGap, all[topK - 1]!.score - all[topK]!.score);
      const top = all.slice(0, topK);
      const m = top[0]!.score;
      const z = top.reduce((acc, c) => acc + Math.exp(c.score - m), 0);
      for (const { e, score } of top) {
        const row = rows === N ? e : head * N + e;
        indices.push(row);
        let a = 0;
        for (let j = 0; j < D; j++) a += x[t * D + j]! * down[row * D + j]!;
        const coef = activation64(a, 'gelu') * (Math.exp(score - m) / z);
        for (let j = 0; j < D; j++) y[t * D + j]! += coef * up[row * D + j]!;
      }
    }
  }
  return { y, indices, boundaryGap };
}
