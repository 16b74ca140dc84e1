// Plain float64 references of the MoE layers for the tests: loops over tokens and experts, no
// tensors, nothing shared with the implementation but the documented semantics.
//
// Axes: T tokens, D model width, E experts, H expert hidden width, K experts per token, C capacity.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import type { NamedArray } from '@peer/expert-store';
import { checkGradients, type TestRng } from '@peer/test-utils';
import type { MoeTensors } from './moe-token-choice.js';

export interface ReferenceMoe {
  dim: number;
  experts: number;
  hidden: number;
  activation: 'gelu' | 'gelu-tanh' | 'relu';
  /** [D*E] */
  router: Float64Array;
  /** [E*D*H] */
  w1: Float64Array;
  /** [E*H] or null */
  b1: Float64Array | null;
  /** [E*H*D] */
  w2: Float64Array;
  /** [E*D] or null */
  b2: Float64Array | null;
}

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is only 1e-7 accurate; use a series / continued fraction to ~1e-15.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz) for large |x|.
  let f = ax;
  let c = ax;
  let d = 0;
  for (let n = 1; n < 300; n++) {
    const a = n / 2;
    d = ax + a * d;
    d = 1 / d;
    c = ax + a / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function referenceActivation(x: number, activation: ReferenceMoe['activation']): number {
  switch (activation) {
    case 'relu':
      return Math.max(0, x);
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu-tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
}

/** FFW_e(x_t): [D] */
export function referenceExpert(m: ReferenceMoe, e: number, x: ArrayLike<number>, t: number): Float64Array {
  const { dim: D, hidden: H } = m;
  const hid = new Float64Array(H);
  for (let j = 0; j < H; j++) {
    let s = m.b1 ? m.b1[e * H + j]! : 0;
    for (let i = 0; i < D; i++) s += x[t * D + i]! * m.w1[(e * D + i) * H + j]!;
    hid[j] = referenceActivation(s, m.activation);
  }
  const out = new Float64Array(D);
  for (let i = 0; i < D; i++) {
    let s = m.b2 ? m.b2[e * D + i]! : 0;
    for (let j = 0; j < H; j++) s += hid[j]! * m.w2[(e * H + j) * D + i]!;
    out[i] = s;
  }
  return out;
}

/** Router logits and softmax probabilities, each [T*E]. */
export function referenceRouter(m: ReferenceMoe, x: ArrayLike<number>, tokens: number): { logits: Float64Array; probs: Float64Array } {
  const { dim: D, experts: E } = m;
  const logits = new Float64Array(tokens * E);
  const probs = new Float64Array(tokens * E);
  for (let t = 0; t < tokens; t++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += x[t * D + i]! * m.router[i * E + e]!;
      logits[t * E + e] = s;
      max = Math.max(max, s);
    }
    let z = 0;
    for (let e = 0; e < E; e++) z += Math.exp(logits[t * E + e]! - max);
    for (let e = 0; e < E; e++) probs[t * E + e] = Math.exp(logits[t * E + e]! - max) / z;
  }
  return { logits, probs };
}

function zLoss(logits: Float64Array, tokens: number, experts: number): number {
  let total = 0;
  for (let t = 0; t < tokens; t++) {
    let max = -Infinity;
    for (let e = 0; e < experts; e++) max = Math.max(max, logits[t * experts + e]!);
    let z = 0;
    for (let e = 0; e < experts; e++) z += Math.exp(logits[t * experts + e]! - max);
    total += (max + Math.log(z)) ** 2;
  }
  return total / tokens;
}

export interface ReferenceOutput {
  /** [T*D] */
  y: Float64Array;
  aux: number;
  /** [T] sum of the token's combine weights */
  weightSums: Float64Array;
  /** [E] tokens processed */
  load: Int32Array;
  /** [E] sum of the combine weights of the tokens each expert processed */
  expertWeights: Float64Array;
  dropped: number;
}

export function referenceTokenChoice(
  m: ReferenceMoe,
  x: ArrayLike<number>,
  tokens: number,
  opts: { topK: number; capacityFactor: number; normalizeGates: boolean; auxLossCoef: number; zLossCoef: number },
): ReferenceOutput {
  const { dim: D, experts: E } = m;
  const { topK: K } = opts;
  const { logits, probs } = referenceRouter(m, x, tokens);
  const capacity = Math.min(tokens, Math.max(1, Math.ceil((tokens * K * opts.capacityFactor) / E)));
  // choices[t] = experts sorted by probability, best first, top K
  const choices: number[][] = [];
  for (let t = 0; t < tokens; t++) {
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => probs[t * E + b]! - probs[t * E + a]! || a - b);
    choices.push(order.slice(0, K));
  }
  const load = new Int32Array(E);
  const kept: boolean[][] = choices.map((c) => c.map(() => false));
  let dropped = 0;
  for (let j = 0; j < K; j++) {
    for (let t = 0; t < tokens; t++) {
      const e = choices[t]![j]!;
      if (load[e]! < capacity) {
        load[e]!++;
        kept[t]![j] = true;
      } else dropped++;
    }
  }
  const y = new Float64Array(tokens * D);
  const weightSums = new Float64Array(tokens);
  const expertWeights = new Float64Array(E);
  for (let t = 0; t < tokens; t++) {
    let denominator = 1;
    if (K > 1 && opts.normalizeGates) denominator = choices[t]!.reduce((s, e) => s + probs[t * E + e]!, 0);
    for (let j = 0; j < K; j++) {
      if (!kept[t]![j]) continue;
      const e = choices[t]![j]!;
      const g = probs[t * E + e]! / denominator;
      weightSums[t]! += g;
      expertWeights[e]! += g;
      const out = referenceExpert(m, e, x, t);
      for (let i = 0; i < D; i++) y[t * D + i]! += g * out[i]!;
    }
  }
  let balance = 0;
  for (let e = 0; e < E; e++) {
    let f = 0;
    for (let t = 0; t < tokens; t++) if (choices[t]!.includes(e)) f++;
    f /= tokens * K;
    let p = 0;
    for (let t = 0; t < tokens; t++) p += probs[t * E + e]!;
    p /= tokens;
    balance += f * p;
  }
  const aux = opts.auxLossCoef * E * balance + opts.zLossCoef * zLoss(logits, tokens, E);
  return { y, aux, weightSums, load, dropped, expertWeights };
}

export function referenceExpertChoice(m: ReferenceMoe, x: ArrayLike<number>, tokens: number, opts: { capacityFactor: number; zLossCoef: number }): ReferenceOutput {
  const { dim: D, experts: E } = m;
  const { logits, probs } = referenceRouter(m, x, tokens);
  const capacity = Math.min(tokens, Math.max(1, Math.ceil((tokens * opts.capacityFactor) / E)));
  const y = new Float64Array(tokens * D);
  const weightSums = new Float64Array(tokens);
  const load = new Int32Array(E);
  const expertWeights = new Float64Array(E);
  const picked = new Uint8Array(tokens);
  for (let e = 0; e < E; e++) {
    const order = Array.from({ length: tokens }, (_, t) => t).sort((a, b) => probs[b * E + e]! - probs[a * E + e]! || a - b);
    for (const t of order.slice(0, capacity)) {
      const g = probs[t * E + e]!;
      load[e]!++;
      picked[t] = 1;
      weightSums[t]! += g;
      expertWeights[e]! += g;
      const out = referenceExpert(m, e, x, t);
      for (let i = 0; i < D; i++) y[t * D + i]! += g * out[i]!;
    }
  }
  const dropped = picked.reduce((n, p) => n + (p ? 0 : 1), 0);
  return { y, aux: opts.zLossCoef * zLoss(logits, tokens, E), weightSums, load, dropped, expertWeights };
}

// ---- helpers shared by the MoE layer tests ----

interface MoeLikeLayer {
  tensors(): MoeTensors;
  readonly config: { dim: number; experts: number; hidden: number; bias: boolean; activation: ReferenceMoe['activation'] };
  stateEntries(prefix: string): NamedArray[];
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void;
}

const stacked = (ts: tf.Tensor[] | null): Float64Array | null => {
  if (!ts) return null;
  const parts = ts.map((t) => t.dataSync());
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** The layer's current weights as a float64 reference model. */
export function referenceOf(layer: MoeLikeLayer): ReferenceMoe {
  const p = layer.tensors();
  const c = layer.config;
  return { dim: c.dim, experts: c.experts, hidden: c.hidden, activation: c.activation, router: stacked([p.router])!, w1: stacked(p.experts.w1)!, b1: stacked(p.experts.b1), w2: stacked(p.experts.w2)!, b2: stacked(p.experts.b2) };
}

/** The parameters as one list (router, then w1, b1, w2, b2 of every expert), for tf.grads and finite differences. */
export function flattenParams(p: MoeTensors): tf.Tensor[] {
  return [p.router, ...p.experts.w1, ...(p.experts.b1 ?? []), ...p.experts.w2, ...(p.experts.b2 ?? [])];
}

/** Inverse of `flattenParams`. */
export function unflattenParams(xs: tf.Tensor[], experts: number, bias: boolean): MoeTensors {
  const E = experts;
  const take = (from: number) => xs.slice(from, from + E);
  const w1 = take(1) as tf.Tensor2D[];
  const b1 = bias ? (take(1 + E) as tf.Tensor1D[]) : null;
  const w2 = take(bias ? 1 + 2 * E : 1 + E) as tf.Tensor2D[];
  const b2 = bias ? (take(1 + 3 * E) as tf.Tensor1D[]) : null;
  return { router: xs[0] as tf.Tensor2D, experts: { w1, b1, w2, b2 } };
}

/** Random weights of the scale that makes routing decisive (the default router init is near-uniform on purpose). */
export function randomizeWeights(layer: MoeLikeLayer, rng: TestRng): void {
  const entries = new Map<string, NamedArray>();
  for (const e of layer.stateEntries('')) {
    const std = e.name === 'router.weight' ? 1 : e.name.includes('.b') ? 0.3 : 0.5;
    entries.set(e.name, { ...e, data: Float32Array.from(rng.normals(e.data.length, std)) });
  }
  layer.loadStateEntries('', (name) => entries.get(name));
}

/** Inputs [T*D] whose pre-activations x W1[e] + b1[e] all stay farther from 0 than 3 finite-difference steps can move them (ReLU kinks). */
export function awayFromKinks(m: ReferenceMoe, rng: TestRng, tokens: number, eps: number): Float64Array {
  const { dim: D, experts: E, hidden: H } = m;
  for (let attempt = 0; attempt < 200; attempt++) {
    const x = rng.normals(tokens * D);
    const scale = Math.max(1, ...Array.from(m.w1, Math.abs), ...Array.from(x, Math.abs));
    let ok = true;
    for (let t = 0; t < tokens && ok; t++)
      for (let e = 0; e < E && ok; e++)
        for (let j = 0; j < H && ok; j++) {
          let pre = m.b1 ? m.b1[e * H + j]! : 0;
          for (let i = 0; i < D; i++) pre += x[t * D + i]! * m.w1[(e * D + i) * H + j]!;
          ok = Math.abs(pre) > 3 * eps * scale;
        }
    if (ok) return x;
  }
  throw new Error(`no input away from the ReLU kinks found (seed ${rng.seed})`);
}

/**
 * Inputs [T*D] whose routing cannot flip under float32 rounding (engines, summation orders and the
 * float64 reference then route alike): each token's router logits, sorted, differ by more than a
 * margin from rank to rank down to rank K (token choice: the choices and their priority order), and
 * each expert's C-th and (C+1)-th best log-probabilities (expert choice: its top-C tokens) differ by
 * more than twice it. A float32 logit lies within D u L of its exact value (u = 2^-24, L the largest
 * sum_i |x_i Wr[i, e]|), a log-probability within twice that: the margin 1e-4 L is far above both,
 * and random inputs miss it with probability of order 1e-4 per compared pair.
 */
export function decisiveInputs(m: ReferenceMoe, rng: TestRng, tokens: number, routing: { topK: number } | { capacity: number }, options: { reluKinks?: boolean } = {}): Float64Array {
  const { dim: D, experts: E, hidden: H } = m;
  for (let attempt = 0; attempt < 100; attempt++) {
    const x = rng.normals(tokens * D);
    const { logits, probs } = referenceRouter(m, x, tokens);
    let mass = 0;
    for (let t = 0; t < tokens; t++)
      for (let e = 0; e < E; e++) {
        let s = 0;
        for (let i = 0; i < D; i++) s += Math.abs(x[t * D + i]! * m.router[i * E + e]!);
        mass = Math.max(mass, s);
      }
    const margin = 1e-4 * mass;
    let ok = true;
    if ('topK' in routing) {
      for (let t = 0; t < tokens && ok; t++) {
        const sorted = Array.from(logits.subarray(t * E, (t + 1) * E)).sort((a, b) => b - a);
        for (let j = 0; j < Math.min(routing.topK, E - 1) && ok; j++) ok = sorted[j]! - sorted[j + 1]! > margin;
      }
    } else if (routing.capacity < tokens) {
      for (let e = 0; e < E && ok; e++) {
        const sorted = Array.from({ length: tokens }, (_, t) => Math.log(probs[t * E + e]!)).sort((a, b) => b - a);
        ok = sorted[routing.capacity - 1]! - sorted[routing.capacity]! > 2 * margin;
      }
    }
    // With reluKinks, every expert's hidden pre-activation x W1 + b1 also lies farther from 0 than
    // 1e-4 of its sum of |terms| (a float32 one is within (D + 1) u of that): every path takes the
    // same side of the kink, so no gradient term flips between implementations.
    for (let t = 0; t < tokens && ok && options.reluKinks; t++)
      for (let e = 0; e < E && ok; e++)
        for (let j = 0; j < H && ok; j++) {
          let pre = m.b1 ? m.b1[e * H + j]! : 0;
          let preMass = Math.abs(pre);
          for (let i = 0; i < D; i++) {
            pre += x[t * D + i]! * m.w1[(e * D + i) * H + j]!;
            preMass += Math.abs(x[t * D + i]! * m.w1[(e * D + i) * H + j]!);
          }
          ok = Math.abs(pre) > 1e-4 * preMass;
        }
    if (ok) return x;
  }
  throw new Error(`no input with decisive routing found (seed ${rng.seed})`);
}

/**
 * Checks a layer's forward function against finite differences, for the input [T, D] and every
 * parameter, with the routing pinned at the base point (the loss is then smooth). The loss is
 * sum(y * proj) + auxLoss, so the layer's config must make auxLoss defined in training.
 */
export function expectPinnedRoutingGradients<Result extends { y: tf.Tensor2D; auxLoss?: tf.Scalar }, Route>(
  layer: MoeLikeLayer,
  rng: TestRng,
  tokens: number,
  label: string,
  forward: (x: tf.Tensor2D, params: MoeTensors, pinned?: Route) => Result,
  routeOf: (result: Result) => Route,
): void {
  const c = layer.config;
  const T = tokens;
  // ReLU has kinks: draw inputs whose hidden pre-activations all stay farther from 0 than the step
  // moves them. The step is as large as that allows: float32 noise of the central difference grows
  // as 1 / eps (at 1e-3 it reached half the tolerance), while the kink margin 3 eps max(|x|, |W1|)
  // still leaves about one draw in ten acceptable at 3e-3.
  const eps = c.activation === 'relu' ? 3e-3 : 1e-2;
  const x = tf.tensor2d(Float32Array.from(c.activation === 'relu' ? awayFromKinks(referenceOf(layer), rng, T, eps) : rng.normals(T * c.dim)), [T, c.dim]);
  const proj = tf.tensor2d(Float32Array.from(rng.normals(T * c.dim)), [T, c.dim]);
  const p = layer.tensors();
  const base = forward(x, p);
  const pinned = routeOf(base);
  const inputs = [x, ...flattenParams(p)].map((t) => tf.clone(t));
  const loss = (...xs: tf.Tensor[]): tf.Scalar => {
    const [xi, ...rest] = xs;
    const params = unflattenParams(rest, c.experts, c.bias);
    const r = forward(xi as tf.Tensor2D, params, pinned);
    return tf.add(tf.sum(tf.mul(r.y, proj)), r.auxLoss!) as tf.Scalar;
  };
  // The pinned routing is the routing of the base point.
  const free = tf.tidy(() => tf.add(tf.sum(tf.mul(base.y, proj)), base.auxLoss!).dataSync()[0]!);
  expect(tf.tidy(() => loss(...inputs).dataSync()[0]!)).toBeCloseTo(free, 5);
  // Central differences in float32 cannot resolve less than a few ulps of the loss over 2 eps: with
  // ReLU's small step that floor can pass 2e-3, so the absolute tolerance covers it, and the
  // estimate stays the plain central difference (extrapolation would triple that noise).
  const floor = (8 * Math.abs(free) * 2 ** -23) / eps;
  checkGradients(loss, inputs, { eps, richardson: eps >= 1e-2, rtol: 2e-2, atol: Math.max(2e-3, floor), maxCoords: 40, label: `${label} seed ${rng.seed}` });
  tf.dispose([x, proj, base.y, base.auxLoss!, ...inputs]);
}
