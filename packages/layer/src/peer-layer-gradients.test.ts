// Gradients of every parameter and of the input against central finite differences of the float64
// reference (so the differences themselves carry no float32 noise).
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { testRng, type TestRng } from '@peer/test-utils';
import { PeerLayer } from './peer-layer.js';
import type { PeerLayerConfig } from './config.js';
import { referencePeer, type ReferenceOutput, type ReferenceParams } from './peer-reference.test-util.js';
import { host, perturbNorm, randomTensor, referenceConfig, referenceParams, separatedInput } from './layer-params.test-util.js';

const SMALL: PeerLayerConfig = { dim: 16, numExperts: 49, heads: 2, topK: 3, dimKey: 5 };
const B = 2;
const S = 4;

interface Analytic {
  x: Float32Array;
  dense: Map<string, Float32Array>;
  down: Float64Array;
  up: Float64Array;
}

/** Analytic gradients of L = sum(y * r): dense ones from tfjs, expert rows from the sparse accumulators. */
function analyticGradients(layer: PeerLayer, x: tf.Tensor3D, r: tf.Tensor3D, training: boolean): Analytic {
  const xVar = tf.variable(x, true);
  const vars = layer.trainableVariables();
  const { grads, value } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(xVar, { training }).y, r)) as tf.Scalar, [xVar, ...vars]);
  value.dispose();
  const dense = new Map<string, Float32Array>();
  for (const v of vars) dense.set(v.name, grads[v.name]!.dataSync() as Float32Array);
  const out: Analytic = { x: grads[xVar.name]!.dataSync() as Float32Array, dense, down: new Float64Array(host(layer).down.data.length), up: new Float64Array(host(layer).up.data.length) };
  tf.dispose(grads);
  xVar.dispose();
  const d = layer.dim;
  for (const [grad, dense] of [[host(layer).downGrad, out.down], [host(layer).upGrad, out.up]] as const) {
    const rows = grad.uniqueRows();
    const values = grad.rowGrads();
    rows.forEach((row, s) => dense.set(values.subarray(s * d, (s + 1) * d), row * d));
  }
  layer.zeroSparseGrads();
  return out;
}

type Field = keyof ReferenceParams | 'x';

/** Checks `analytic` against central differences of the reference loss in float64, coordinate by coordinate. */
function checkField(
  rng: TestRng,
  name: string,
  field: Field,
  analytic: ArrayLike<number>,
  coords: number[],
  loss: (field: Field, index: number, delta: number) => number | undefined,
): number {
  const eps = 1e-5;
  let checked = 0;
  let scale = 0;
  for (let i = 0; i < analytic.length; i++) scale = Math.max(scale, Math.abs(analytic[i]!));
  for (const index of coords) {
    const plus = loss(field, index, eps);
    const minus = loss(field, index, -eps);
    if (plus === undefined || minus === undefined) continue; // a selection or a ReLU changed: not differentiable here
    const numeric = (plus - minus) / (2 * eps);
    const a = analytic[index]!;
    const tol = 2e-3 * Math.abs(numeric) + 2e-4 * scale + 1e-6;
    if (!(Math.abs(a - numeric) <= tol)) {
      throw new Error(`${name}: d/d${field}[${index}] analytic ${a}, finite differences ${numeric} (tolerance ${tol}; seed ${rng.seed})`);
    }
    checked++;
  }
  return checked;
}

function sample(rng: TestRng, n: number, count: number): number[] {
  return Array.from({ length: Math.min(n, count) }, () => rng.int(n));
}

describe('PeerLayer gradients match finite differences of the float64 reference', () => {
  const cases: [string, Partial<PeerLayerConfig>, boolean][] = [
    ['BN (batch stats), softmax, gelu', {}, true],
    ['BN in evaluation mode', {}, false],
    ['relu scores, gelu-tanh, shared keys, layer norm', { scores: 'relu', activation: 'gelu-tanh', sharedKeys: true, queryNorm: 'layer' }, true],
    ['relu experts, no norm, separate pools, chunks of 3 tokens, candidateK 5, width 12 (JS row loops)', { dim: 12, activation: 'relu', queryNorm: 'none', separateExpertsPerHead: true, tokenChunk: 3, retrievalChunk: 5, candidateK: 5 }, true],
  ];
  for (const [name, overrides, training] of cases) {
    it(name, () => {
      const rng = testRng();
      const layer = new PeerLayer({ ...SMALL, ...overrides, seed: rng.int(1000) });
      perturbNorm(layer, rng);
      const cfg = referenceConfig(layer);
      const base = referenceParams(layer);
      // The float32 layer must select the reference's experts at the base point: no near-tie at the
      // top-k boundary (float32 scores here are accurate to ~1e-6).
      const { x, refs } = separatedInput(rng, [B, S, layer.dim], (x64) => [referencePeer(x64, B * S, base, cfg, training)], 2e-5);
      const r = randomTensor<tf.Rank.R3>(rng, [B, S, layer.dim]);
      const before = tf.memory().numTensors;
      const analytic = analyticGradients(layer, x, r, training);
      expect(tf.memory().numTensors).toBe(before);

      const x64 = Float64Array.from(x.dataSync());
      const r64 = Float64Array.from(r.dataSync());
      const baseOut = refs[0]!;
      // Where the loss is not differentiable between the two steps: another selection, or a ReLU
      // (expert activation or score) crossing its kink.
      const pattern = (out: ReferenceOutput) =>
        [
          out.indices.join(','),
          cfg.activation === 'relu' ? Array.from(out.preActivations, (a) => (a > 0 ? 1 : 0)).join('') : '',
          cfg.scores === 'relu' ? Array.from(out.scores, (v) => (v > 0 ? 1 : 0)).join('') : '',
        ].join('|');
      const basePattern = pattern(baseOut);
      const loss = (field: Field, index: number, delta: number): number | undefined => {
        const params = { ...base };
        let xs = x64;
        if (field === 'x') {
          xs = Float64Array.from(x64);
          xs[index]! += delta;
        } else {
          const copy = Float64Array.from(base[field]);
          copy[index]! += delta;
          params[field] = copy;
        }
        const out = referencePeer(xs, B * S, params, cfg, training);
        if (pattern(out) !== basePattern) return undefined;
        let l = 0;
        for (let i = 0; i < out.y.length; i++) l += out.y[i]! * r64[i]!;
        return l;
      };

      const n = { checked: 0 };
      n.checked += checkField(rng, name, 'x', analytic.x, sample(rng, analytic.x.length, 24), loss);
      const wq = analytic.dense.get(layer.queryWeight.name)!;
      n.checked += checkField(rng, name, 'wq', wq, sample(rng, wq.length, 24), loss);
      if (layer.queryNorm.weight) {
        const gamma = analytic.dense.get(layer.queryNorm.weight.name)!;
        const beta = analytic.dense.get(layer.queryNorm.bias!.name)!;
        n.checked += checkField(rng, name, 'gamma', gamma, sample(rng, gamma.length, 12), loss);
        n.checked += checkField(rng, name, 'beta', beta, sample(rng, beta.length, 12), loss);
      }
      // Sub-keys: mostly coordinates of selected rows (non-zero), a few of any row.
      const c = layer.config;
      const dk = c.dimKey;
      for (const [field, v] of [['subKeys1', layer.keys.subKeys1], ['subKeys2', layer.keys.subKeys2]] as const) {
        const g = analytic.dense.get(v.name)!;
        const selected = new Set<number>();
        for (let i = 0; i < baseOut.indices.length; i++) {
          const e = baseOut.indices[i]! % c.numExperts;
          const head = Math.floor(i / c.topK) % c.heads;
          const set = c.sharedKeys ? 0 : head;
          selected.add(set * c.subKeys + (field === 'subKeys1' ? Math.floor(e / c.subKeys) : e % c.subKeys));
        }
        const rows = [...selected];
        const coords = [...Array.from({ length: 12 }, () => rows[rng.int(rows.length)]! * dk + rng.int(dk)), ...sample(rng, g.length, 6)];
        n.checked += checkField(rng, name, field, g, coords, loss);
      }
      // Expert rows: coordinates of retrieved rows, plus any rows (zero gradient unless retrieved).
      const retrieved = [...new Set(baseOut.indices)];
      const d = c.dim;
      for (const field of ['down', 'up'] as const) {
        const coords = [...Array.from({ length: 16 }, () => retrieved[rng.int(retrieved.length)]! * d + rng.int(d)), ...sample(rng, analytic[field].length, 6)];
        n.checked += checkField(rng, name, field, analytic[field], coords, loss);
      }
      // Skipped coordinates (selection or ReLU flips at eps = 1e-5) must be rare.
      expect(n.checked).toBeGreaterThan(100);
      x.dispose();
      r.dispose();
      layer.dispose();
    });
  }
});
