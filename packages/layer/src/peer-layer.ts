// The PEER layer (He 2024, "Mixture of A Million Experts"), a drop-in feed-forward block.
//
// Axes: B batch, S sequence, T = B*S tokens, D model width (the local `d`), h heads, k experts per
// head, dk sub-key width, F = h*2*dk query features (internal order: head, half, dk), N experts,
// n = sqrt(N) sub-keys per half, R = h*k experts per token.
//
// Forward, following the paper's Algorithm 1 (peer_forward):
//   indices, scores = get_indices(query_proj(x), sub_keys, top_k=k)    -> queries, retrieve
//   w_down = w_down_embed(indices); w_up = w_up_embed(indices)         -> expertMixture gathers
//   x = einsum('btd,bthkd->bthk', x, w_down)                           -> a = u . x
//   x = activation(x)                                                  -> sigma(a)
//   x = x * softmax(scores)                                            -> g * sigma(a)
//   x = einsum('bthk,bthkd->btd', x, w_up)                             -> y = sum g sigma(a) v
// with query_proj = BatchNorm(x Wq) (the paper's query BN) and per-head softmax over the k scores.
//
// Training: the dense parameters (Wq, norm gamma/beta, sub-keys) are tfjs variables for any tfjs
// optimizer; the expert tables live outside tfjs, their row gradients accumulate during backward
// and `sparseStep(lrScale)` applies the sparse optimizer once per step.
//
// Engines: on the host engines (wasm, cpu) the retrieved rows come to JS and the mixture's [T, R]
// math runs in JS loops (expert-mixture.ts); with tables on a device (webgpu) the rows stay an int32
// tensor and the mixture is tfjs ops (device-expert-mixture.ts), with no synchronous read.
import * as tf from '@tensorflow/tfjs-core';
import { makeReadable, Rng } from '@peer/backend';
import { ProductKeys, QueryNorm, retrieve } from '@peer/product-keys';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { createExpertTable, UsageStats, type ExpertTable, type SparseTableOptimizer, type NamedArray, type RowGradient, type UsageOptions, type UsageStatsReport } from '@peer/expert-store';
import { resolvePeerConfig, type PeerLayerConfig, type ResolvedPeerConfig } from './config.js';
import { peerActiveParams, peerFlops, peerParams, type PeerFlops, type PeerParams } from './costs.js';
import { deviceExpertMixture } from './device-expert-mixture.js';
import { expertMixture, type MixtureTables, type RowGradientSink } from './expert-mixture.js';
import { createLayerOptimizer } from './layer-tables.js';
import { DOWN_NAME, UP_NAME, exportPeerPytorch, loadPeerPytorchInto } from './pytorch-layout.js';

let layerCount = 0;

/** State entry of the dropout stream. */
const RNG_NAME = 'dropout_rng';

export interface PeerRouting {
  /** Expert rows [T, h, k], best first per head (head offsets included with separate pools). */
  indices: Int32Array;
  /** Router weights g [T, h, k]. */
  weights: Float32Array;
}

export class PeerLayer implements FeedForwardLayer {
  readonly kind = 'peer' as const;
  /** Model width d. */
  readonly dim: number;
  readonly config: ResolvedPeerConfig;
  /** Sub-keys (tfjs variables). */
  readonly keys: ProductKeys;
  /** Query projection Wq [d, F], features in (head, half, dk) order. */
  readonly queryWeight: tf.Variable<tf.Rank.R2>;
  readonly queryNorm: QueryNorm;
  /** u rows, [tableRows, d] (PEER-pytorch weight_down_embed). */
  readonly down: ExpertTable;
  /** v rows, [tableRows, d] (PEER-pytorch weight_up_embed). */
  readonly up: ExpertTable;
  /** Row gradients of `down` accumulated by backward passes since the last sparse step. */
  readonly downGrad: RowGradient;
  readonly upGrad: RowGradient;
  /** The sparse optimizer of both tables (its own constant learning rate, scaled by `sparseStep`). */
  readonly expertOptimizer: SparseTableOptimizer;
  private dropoutRng: Rng;
  private usage: UsageStats | undefined;
  /** Where backward passes send row gradients (the sparse accumulators unless redirected). */
  private gradientSinks: { down: RowGradientSink; up: RowGradientSink };
  private disposed = false;

  constructor(config: PeerLayerConfig) {
    const c = resolvePeerConfig(config);
    this.config = c;
    this.dim = c.dim;
    const name = `peer_${layerCount++}`;
    const rng = new Rng(c.seed);
    const f = c.heads * 2 * c.dimKey;
    this.keys = new ProductKeys({
      numKeys: c.numExperts,
      heads: c.heads,
      dimKey: c.dimKey,
      sharedKeys: c.sharedKeys,
      seed: rng.fork(),
      name: `${name}/keys`,
    });
    // Glorot-uniform Wq.
    const limit = Math.sqrt(6 / (c.dim + f));
    const wqInit = tf.tensor2d(rng.fork().fillUniform(new Float32Array(c.dim * f), -limit, limit), [c.dim, f]);
    this.queryWeight = tf.variable(wqInit, true, `${name}/query_weight`) as tf.Variable<tf.Rank.R2>;
    wqInit.dispose();
    this.queryNorm = new QueryNorm({ kind: c.queryNorm, features: f, momentum: c.normMomentum, eps: c.normEps, name: `${name}/query_norm` });
    // u, v ~ normal(0, 1/sqrt(d)); named as PEER-pytorch's embeddings (optimizer state is named after them).
    const init = { kind: 'normal', std: 1 / Math.sqrt(c.dim) } as const;
    this.down = createExpertTable({ rows: c.tableRows, dim: c.dim, init, seed: rng.fork().int(2 ** 31), name: DOWN_NAME });
    this.up = createExpertTable({ rows: c.tableRows, dim: c.dim, init, seed: rng.fork().int(2 ** 31), name: UP_NAME });
    this.downGrad = this.down.createGradient();
    this.upGrad = this.up.createGradient();
    this.gradientSinks = { down: this.downGrad, up: this.upGrad };
    this.expertOptimizer = createLayerOptimizer(c.expertOptimizer, [this.down, this.up]);
    this.dropoutRng = rng.fork();
  }

  /** y [B, S, D] from x [B, S, D]. `training` selects batch statistics and dropout. */
  apply(x: tf.Tensor3D, mode: { training: boolean }): { y: tf.Tensor3D } {
    this.checkAlive();
    if (!(x instanceof tf.Tensor) || x.rank !== 3 || x.shape[2] !== this.dim) {
      throw new Error(`PeerLayer.apply: x must be a [batch, seq, ${this.dim}] tensor, got ${x instanceof tf.Tensor ? `shape [${x.shape.join(', ')}]` : String(x)}`);
    }
    const [b, s] = x.shape;
    return tf.tidy(() => {
      const y = this.applyTokens(tf.reshape(x, [b * s, this.dim]), mode.training);
      return { y: tf.reshape(y, [b, s, this.dim]) };
    });
  }

  /** The expert rows and router weights each token would use (no gradient, no state change). */
  route(x: tf.Tensor, mode: { training: boolean }): PeerRouting {
    this.checkAlive();
    this.refuseOnDevice('route', 'reads the routing synchronously');
    return tf.tidy(() => {
      const x2 = tf.reshape(x, [-1, this.dim]) as tf.Tensor2D;
      // Batch statistics without moving the running ones: normalize as training would.
      const { indices, weights } = this.retrieveExperts(x2, mode.training, false);
      return { indices: indices as Int32Array, weights: weights.dataSync() as Float32Array };
    });
  }

  /** Whether the tables keep their rows on a device: then indices stay tensors and nothing is read back. */
  private get onDevice(): boolean {
    return this.down.placement === 'device';
  }

  /**
   * Expert rows and router weights [T, h*k]. The rows are an Int32Array for host tables and an
   * int32 tensor [T, h*k] (in the caller's tidy scope) for device tables.
   */
  private retrieveExperts(x: tf.Tensor2D, training: boolean, updateStats = true): { indices: Int32Array | tf.Tensor2D; weights: tf.Tensor2D } {
    const c = this.config;
    const tokens = x.shape[0];
    // query_proj(x): q = BN(x Wq)  [T, F]
    const q = tf.matMul(x, this.queryWeight) as tf.Tensor2D;
    const qn = this.queryNorm.apply(q, training, updateStats);
    // get_indices(...): top-k over the product keys per head  [T, h, k]
    const found = retrieve(tf.reshape(qn, [tokens, c.heads, 2 * c.dimKey]), this.keys, {
      k: c.topK,
      candidateK: c.candidateK,
      chunkSize: c.retrievalChunk,
    });
    // Router weights: softmax(scores) over the k experts of each head (or relu).
    const g = c.scores === 'softmax' ? tf.softmax(found.scores) : tf.relu(found.scores);
    const weights = tf.reshape(g, [tokens, c.heads * c.topK]) as tf.Tensor2D;
    if (this.onDevice) {
      // Head h owns rows [h*N, (h+1)*N) of each table with separate pools.
      const rows = c.separateExpertsPerHead ? tf.add(found.indices, tf.reshape(tf.range(0, c.heads * c.numExperts, c.numExperts, 'int32'), [1, c.heads, 1])) : found.indices;
      return { indices: tf.reshape(rows, [tokens, c.heads * c.topK]) as tf.Tensor2D, weights };
    }
    const indices = found.indices.dataSync() as Int32Array;
    found.indices.dispose();
    if (c.separateExpertsPerHead) {
      for (let i = 0; i < indices.length; i++) indices[i]! += Math.floor(i / c.topK) % c.heads * c.numExperts;
    }
    return { indices, weights };
  }

  private applyTokens(x: tf.Tensor2D, training: boolean): tf.Tensor2D {
    const c = this.config;
    const tokens = x.shape[0];
    const perToken = c.heads * c.topK;
    const { indices, weights } = this.retrieveExperts(x, training);
    if (this.usage) this.usage.record(indices as Int32Array, weights.dataSync() as Float32Array);
    let g = weights;
    if (training && c.dropout > 0) {
      // Dropout on sigma(u . x) is a mask on its weight g: y = sum g m sigma(a) v.
      const keep = 1 - c.dropout;
      const mask = new Float32Array(tokens * perToken);
      for (let i = 0; i < mask.length; i++) mask[i] = this.dropoutRng.float() < keep ? 1 / keep : 0;
      g = tf.mul(g, tf.tensor2d(mask, [tokens, perToken]));
    }
    const tables: MixtureTables = { down: this.down, up: this.up, downGrad: this.gradientSinks.down, upGrad: this.gradientSinks.up };
    const options = { activation: c.activation };
    const mix = (xs: tf.Tensor2D, gs: tf.Tensor2D, t0: number, size: number): tf.Tensor2D =>
      indices instanceof Int32Array
        ? expertMixture(xs, gs, size === tokens ? indices : indices.subarray(t0 * perToken, (t0 + size) * perToken), tables, options)
        : deviceExpertMixture(xs, gs, size === tokens ? indices : tf.slice(indices, [t0, 0], [size, perToken]), tables, options);
    const chunk = c.tokenChunk;
    if (tokens <= chunk) return mix(x, g, 0, tokens);
    // Token chunks bound the gathered [chunk*h*k, d] rows held at once (forward and backward).
    const parts: tf.Tensor2D[] = [];
    for (let t0 = 0; t0 < tokens; t0 += chunk) {
      const size = Math.min(chunk, tokens - t0);
      const xs = tf.slice(x, [t0, 0], [size, c.dim]);
      const gs = tf.slice(g, [t0, 0], [size, perToken]);
      parts.push(mix(xs, gs, t0, size));
    }
    return tf.concat(parts, 0);
  }

  /** Dense trainable variables: Wq, norm gamma and beta, sub-keys. */
  trainableVariables(): tf.Variable[] {
    return [this.queryWeight, ...this.queryNorm.trainableVariables(), ...this.keys.variables()];
  }

  /**
   * Applies the sparse optimizer to the u and v rows touched since the last call, then clears their
   * gradients. Call once per training step, after backward (with the schedule's factor).
   */
  sparseStep(lrScale: number): void {
    this.checkAlive();
    if (!(lrScale >= 0) || !Number.isFinite(lrScale)) throw new Error(`PeerLayer.sparseStep: lrScale must be a finite number >= 0, got ${lrScale}`);
    this.expertOptimizer.step(this.down, this.downGrad, lrScale);
    this.expertOptimizer.step(this.up, this.upGrad, lrScale);
    this.zeroSparseGrads();
  }

  /** Drops the accumulated row gradients. */
  zeroSparseGrads(): void {
    this.downGrad.clear();
    this.upGrad.clear();
  }

  /**
   * Runs `fn` with the backward passes' row gradients sent to `down` / `up` instead of the sparse
   * accumulators (e.g. dense gradients for interop checks).
   */
  withRowGradientSinks<T>(sinks: { down: RowGradientSink; up: RowGradientSink }, fn: () => T): T {
    const saved = this.gradientSinks;
    this.gradientSinks = sinks;
    try {
      return fn();
    } finally {
      this.gradientSinks = saved;
    }
  }

  /** Forward FLOPs per token (a multiply-add is 2); see `peerFlops` for the formula. */
  flopsPerToken(): number {
    return peerFlops(this.config).total;
  }

  /** The parts of `flopsPerToken`. */
  flops(): PeerFlops {
    return peerFlops(this.config);
  }

  activeParamsPerToken(): number {
    return peerActiveParams(this.config);
  }

  totalParams(): number {
    return peerParams(this.config).total;
  }

  /** The parts of `totalParams`. */
  params(): PeerParams {
    return peerParams(this.config);
  }

  /** Starts (or restarts) accumulating router weights per expert (and, with several heads, their overlap) in forward passes (host tables only). */
  startUsage(options: UsageOptions = {}): void {
    this.refuseOnDevice('startUsage', 'reads the routing of every forward pass synchronously');
    const c = this.config;
    this.usage = new UsageStats(c.tableRows, { ...options, heads: { count: c.heads, perHead: c.topK } });
  }

  /** The usage report (the paper's Table 2 metrics) since `startUsage`; stops accumulating. */
  stopUsage(): UsageStatsReport {
    if (!this.usage) throw new Error('PeerLayer.stopUsage: startUsage was not called');
    const report = this.usage.report();
    this.usage = undefined;
    return report;
  }

  /**
   * Makes `stateEntries` possible: on a device engine it reads every variable, table and optimizer
   * slot back to the host once (asynchronously); elsewhere it does nothing. Await it after the last
   * step and before `stateEntries`.
   */
  async prepareState(): Promise<void> {
    this.checkAlive();
    await makeReadable([this.queryWeight, ...this.queryNorm.variables(), ...this.keys.variables()]);
    for (const part of [this.down, this.up, this.expertOptimizer]) await part.prepareState();
  }

  /**
   * Every piece of state, names prefixed with `prefix`: the weights under PEER-pytorch's names
   * (tables as live memory), the sparse optimizer's moments and step counts, the dropout stream.
   * On a device engine, await `prepareState()` first.
   */
  stateEntries(prefix: string): NamedArray[] {
    this.checkAlive();
    return [
      ...exportPeerPytorch(this, prefix),
      ...this.expertOptimizer.stateEntries(prefix),
      { name: `${prefix}${RNG_NAME}`, dtype: 'I32', shape: [4], data: Int32Array.from(this.dropoutRng.state()) },
    ];
  }

  /** Restores what `stateEntries` produced; throws naming a missing or mis-shaped entry. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.checkAlive();
    const rng = get(`${prefix}${RNG_NAME}`);
    if (!rng || rng.dtype !== 'I32' || rng.shape.length !== 1 || rng.shape[0] !== 4) {
      throw new Error(`PeerLayer.loadStateEntries: entry '${prefix}${RNG_NAME}' is ${rng ? `${rng.dtype} [${rng.shape.join(', ')}]` : 'missing'}, expected I32 [4]`);
    }
    loadPeerPytorchInto(this, get, prefix);
    this.expertOptimizer.loadStateEntries(prefix, get);
    this.dropoutRng = new Rng(Array.from(rng.data as Int32Array));
  }

  /**
   * Call after changing the expert tables' rows directly. The mixture reads rows in place and
   * caches none, so there is nothing to drop; kept so that callers need not know.
   */
  expertTablesChanged(): void {}

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.keys.dispose();
    this.queryWeight.dispose();
    this.queryNorm.dispose();
    this.expertOptimizer.dispose();
    this.down.dispose();
    this.up.dispose();
  }

  private refuseOnDevice(method: string, why: string): void {
    if (this.onDevice) {
      throw new Error(`PeerLayer.${method}: ${why}, which the ${tf.getBackend()} engine cannot do; run it on wasm or cpu (checkpoints load on any engine)`);
    }
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('PeerLayer: used after dispose()');
  }
}
