// Shared by the tests (not exported by the package): float64 copies of a layer's parameters for the
// reference, and random parameter perturbations so that defaults (gamma 1, beta 0) hide nothing.
//
// Axes: D model width, F query features, n = sqrt(N) sub-keys per half, dk sub-key width, H' key sets.
import * as tf from '@tensorflow/tfjs-core';
import type { TestRng } from '@peer/test-utils';
import { HostExpertTable, RowSparseGrad } from '@peer/expert-store';
import type { PeerLayer } from './peer-layer.js';
import type { ReferenceConfig, ReferenceOutput, ReferenceParams } from './peer-reference.test-util.js';

/** The layer's host tables and row gradients (what the wasm tests inspect directly); throws for device tables. */
export function host(layer: PeerLayer): { down: HostExpertTable; up: HostExpertTable; downGrad: RowSparseGrad; upGrad: RowSparseGrad } {
  const { down, up, downGrad, upGrad } = layer;
  if (!(down instanceof HostExpertTable && up instanceof HostExpertTable && downGrad instanceof RowSparseGrad && upGrad instanceof RowSparseGrad)) {
    throw new Error(`this test reads host tables; the layer's tables are on the ${down.placement}`);
  }
  return { down, up, downGrad, upGrad };
}

export function referenceParams(layer: PeerLayer): ReferenceParams {
  const f64 = (t: tf.Tensor | undefined, n: number, fill = 0) => (t ? Float64Array.from(t.dataSync()) : new Float64Array(n).fill(fill));
  const f = layer.config.heads * 2 * layer.config.dimKey;
  const norm = layer.queryNorm;
  return {
    wq: f64(layer.queryWeight, 0),
    gamma: f64(norm.weight, f, 1),
    beta: f64(norm.bias, f, 0),
    runningMean: f64(norm.runningMean, f, 0),
    runningVar: f64(norm.runningVar, f, 1),
    subKeys1: f64(layer.keys.subKeys1, 0),
    subKeys2: f64(layer.keys.subKeys2, 0),
    down: Float64Array.from(host(layer).down.data),
    up: Float64Array.from(host(layer).up.data),
  };
}

export function referenceConfig(layer: PeerLayer): ReferenceConfig {
  const c = layer.config;
  return {
    dim: c.dim,
    heads: c.heads,
    topK: c.topK,
    dimKey: c.dimKey,
    subKeys: c.subKeys,
    numExperts: c.numExperts,
    sharedKeys: c.sharedKeys,
    separateExpertsPerHead: c.separateExpertsPerHead,
    scores: c.scores,
    queryNorm: c.queryNorm,
    activation: c.activation,
    normEps: c.normEps,
  };
}

/** Random gamma, beta and running statistics, so that the norm's defaults hide no bug. */
export function perturbNorm(layer: PeerLayer, rng: TestRng): void {
  const norm = layer.queryNorm;
  const f = norm.features;
  const set = (v: tf.Variable | undefined, values: Float64Array) => {
    if (!v) return;
    const t = tf.tensor1d(Float32Array.from(values));
    v.assign(t);
    t.dispose();
  };
  set(norm.weight, rng.uniforms(f, 0.5, 1.5));
  set(norm.bias, rng.normals(f, 0.3));
  set(norm.runningMean, rng.normals(f, 0.3));
  set(norm.runningVar, rng.uniforms(f, 0.5, 2));
}

/** A float32 tensor of normals. */
export function randomTensor<R extends tf.Rank>(rng: TestRng, shape: number[], std = 1): tf.Tensor<R> {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor<tf.Rank>(Float32Array.from(rng.normals(n, std)), shape) as tf.Tensor<R>;
}

/**
 * A random float32 input [B, S, D] whose float64 references (`refsOf`, e.g. training and evaluation)
 * all have their k-th and (k+1)-th best scores more than `minGap` apart, with those references:
 * float32 rounding may pick another k-th expert only at a near-tie (the layer is discontinuous there).
 * With `kinkGap`, every expert pre-activation also lies farther than that from 0 (a ReLU expert's
 * kink, where rounding may flip the derivative).
 */
export function separatedInput(rng: TestRng, shape: [number, number, number], refsOf: (x: Float64Array) => ReferenceOutput[], minGap: number, kinkGap = 0): { x: tf.Tensor3D; refs: ReferenceOutput[] } {
  for (let attempt = 0; attempt < 100; attempt++) {
    const x = randomTensor<tf.Rank.R3>(rng, shape);
    const refs = refsOf(Float64Array.from(x.dataSync()));
    if (refs.every((r) => r.boundaryGap > minGap && r.preActivations.every((a) => Math.abs(a) > kinkGap))) return { x, refs };
    x.dispose();
  }
  throw new Error(`no input without a near-tie at the top-k boundary found (seed ${rng.seed})`);
}
