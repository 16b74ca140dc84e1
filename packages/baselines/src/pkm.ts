// Product-key memory (Lample et al. 2019), the PEER paper's PKM baseline.
//
// Axes: B batch, S sequence, T = B*S tokens, D model width, h heads, k slots per head,
// dk sub-key width, F = h*2*dk query features (order: head, half, dk), N memory slots,
// n = sqrt(N) sub-keys per half (the local `sqrtN`), H' key sets (1 shared, else h).
//
//   q = BN(x Wq)                       [T, F] query BatchNorm (batch statistics in training)
//   for each head: the top-k slots by q_h . [C1_a ; C2_b] over all N = n^2 slots, found by
//   @peer/product-keys from the top-k of each half (exact); scores re-gathered, differentiable
//   w = softmax over the k scores of each head
//   y = sum_h sum_i w_hi V[idx_hi]     no per-slot nonlinearity (unlike PEER)
//
// The value table V [N, D] lives outside tfjs (an ExpertTable: in host memory, or on the device
// with webgpu; pkm-tables.ts makes it); the read and its backward are the table's gather-mixture
// primitives (pkm-value-mixture.ts). Its gradient is row-sparse: the backward pass sums w_hi * dy
// per distinct read row into the table's row gradient, and `sparseStep` applies the table's own
// optimizer (default Adam, lr 1e-3) to the touched rows only. With a device table the retrieved
// slots stay an int32 tensor and nothing is read back during training.
import * as tf from '@tensorflow/tfjs-core';
import { makeReadable, Rng } from '@peer/backend';
import { batchNormInference, batchNormTraining, ProductKeys, QueryNorm, retrieve, updateRunningStats, type SubKeyTables } from '@peer/product-keys';
import type { ExpertTable, NamedArray, RowGradient, SparseTableOptimizer, UsageOptions, UsageStatsReport } from '@peer/expert-store';
import type { ApplyMode, FeedForwardLayer, FeedForwardOutput, StateEntryGetter } from '@peer/feed-forward';
import { checkEntries, requireEntry, variableEntry, type ExpectedEntry } from './layer-state.js';
import { checkInput3D } from './moe-stats.js';
import { parsePkmConfig, type PkmConfig, type PkmOptions } from './pkm-config.js';
import { createPkmTables } from './pkm-tables.js';
import { valueMixture, type RowGradientSink } from './pkm-value-mixture.js';
import { UsageAccumulator } from './usage-report.js';

export interface PkmQueryNormTensors {
  /** gamma [F] */
  weight: tf.Tensor1D;
  /** beta [F] */
  bias: tf.Tensor1D;
  /** [F] */
  runningMean: tf.Tensor1D;
  /** [F] */
  runningVar: tf.Tensor1D;
}

export interface PkmTensors {
  /** Wq [D, F] */
  queryWeight: tf.Tensor2D;
  /** null for queryNorm 'none'. */
  queryNorm: PkmQueryNormTensors | null;
  keys: SubKeyTables;
  values: ExpertTable;
}

export interface PkmForwardOptions {
  /** Pins the retrieved slots [T*h*k] (e.g. for finite differences); scores are then computed for them. */
  indices?: Int32Array;
  /** Receives the batch statistics of the query BatchNorm in training (disposed after the call). */
  onBatchStats?: (stats: { mean: tf.Tensor1D; variance: tf.Tensor1D }) => void;
}

export interface PkmForwardResult {
  /** [T, D] */
  y: tf.Tensor2D;
  /**
   * [T*h*k] retrieved slots, best first per head: an Int32Array with a host value table, an int32
   * tensor [T, h*k] (in the caller's scope) with a device table.
   */
  indices: Int32Array | tf.Tensor2D;
  /** [T, h*k] softmax weights. */
  weights: tf.Tensor2D;
}

/**
 * Scores q_h . [C1_a ; C2_b] of given slots idx = a * n + b: [T, h, k], differentiable in the
 * queries and sub-keys (plain gathers; used when the retrieval is pinned).
 */
export function scoresForSlots(queries: tf.Tensor3D, keys: SubKeyTables, indices: Int32Array, k: number): tf.Tensor3D {
  const [T, h, twoDk] = queries.shape;
  const dk = twoDk / 2;
  const [sets, sqrtN] = keys.subKeys1.shape as [number, number, number];
  if (indices.length !== T * h * k) throw new Error(`scoresForSlots: ${indices.length} indices, expected T * h * k = ${T * h * k}`);
  const first = new Int32Array(indices.length);
  const second = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const offset = sets === 1 ? 0 : (Math.floor(i / k) % h) * sqrtN;
    first[i] = Math.floor(indices[i]! / sqrtN) + offset;
    second[i] = (indices[i]! % sqrtN) + offset;
  }
  const half = (table: tf.Tensor, rows: Int32Array, begin: number): tf.Tensor => {
    const picked = tf.reshape(tf.gather(tf.reshape(table, [sets * sqrtN, dk]), tf.tensor1d(rows, 'int32')), [T, h, k, dk]);
    const q = tf.reshape(tf.slice(queries, [0, 0, begin], [T, h, dk]), [T, h, 1, dk]);
    return tf.sum(tf.mul(picked, q), 3);
  };
  return tf.add(half(keys.subKeys1, first, 0), half(keys.subKeys2, second, dk)) as tf.Tensor3D;
}

/** The layer as a function of explicit tensors; value-row gradients go to `sink` on backward. */
export function pkmForward(x: tf.Tensor2D, params: PkmTensors, config: PkmConfig, training: boolean, sink: RowGradientSink, options: PkmForwardOptions = {}): PkmForwardResult {
  const T = x.shape[0];
  const { heads: h, topK: k, dimKey: dk } = config;
  let q = tf.matMul(x, params.queryWeight) as tf.Tensor2D;
  const norm = params.queryNorm;
  if (norm && training) {
    const bn = batchNormTraining(q, norm.weight, norm.bias, config.normEps);
    try {
      options.onBatchStats?.({ mean: bn.mean, variance: bn.variance });
    } finally {
      tf.dispose([bn.mean, bn.variance]);
    }
    q = bn.y;
  } else if (norm) {
    q = batchNormInference(q, norm.weight, norm.bias, norm.runningMean, norm.runningVar, config.normEps);
  }
  const queries = tf.reshape(q, [T, h, 2 * dk]) as tf.Tensor3D;
  const onDevice = params.values.placement === 'device';
  let indices: Int32Array | tf.Tensor2D;
  let scores: tf.Tensor3D;
  if (options.indices) {
    scores = scoresForSlots(queries, params.keys, options.indices, k);
    // Pinned slots come from the host; a device table takes them uploaded.
    indices = onDevice ? tf.tensor2d(options.indices, [T, h * k], 'int32') : options.indices;
  } else {
    const found = retrieve(queries, params.keys, { k, candidateK: config.candidateK });
    if (onDevice) {
      indices = tf.reshape(found.indices, [T, h * k]) as tf.Tensor2D;
    } else {
      indices = Int32Array.from(found.indices.dataSync() as Int32Array);
      found.indices.dispose();
    }
    scores = found.scores;
  }
  const weights = tf.reshape(tf.softmax(scores), [T, h * k]) as tf.Tensor2D;
  const y = valueMixture(weights, indices, params.values, sink);
  return { y, indices, weights };
}

function variableFrom(values: Float32Array, shape: number[], trainable: boolean): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(values, shape, 'float32'), trainable));
}

/** A 'batch' QueryNorm, whose variables all exist. */
type PkmQueryNorm = QueryNorm & {
  readonly weight: tf.Variable<tf.Rank.R1>;
  readonly bias: tf.Variable<tf.Rank.R1>;
  readonly runningMean: tf.Variable<tf.Rank.R1>;
  readonly runningVar: tf.Variable<tf.Rank.R1>;
};

/** Product-key memory layer: the `FeedForwardLayer` of kind 'pkm'. */
export class ProductKeyMemory implements FeedForwardLayer {
  readonly kind = 'pkm' as const;
  readonly dim: number;
  readonly config: Readonly<PkmConfig>;
  readonly keys: ProductKeys;
  /** Wq [D, F] */
  readonly queryWeight: tf.Variable;
  /**
   * The query BatchNorm: gamma, beta [F] (trainable) and the running statistics [F] (not trainable);
   * null without BN. Its 'matmul' reductions are PKM's arithmetic (see @peer/product-keys' QueryNorm).
   */
  readonly queryNorm: PkmQueryNorm | null;
  /** V [N, D], outside tfjs. */
  readonly values: ExpertTable;
  /** Value-row gradients accumulated by backward passes since the last sparse step. */
  readonly valueGrad: RowGradient;
  readonly valueOptimizer: SparseTableOptimizer;
  private readonly usage: UsageAccumulator;
  private disposed = false;

  constructor(options: PkmOptions) {
    const c = parsePkmConfig(options);
    this.config = Object.freeze(c);
    this.dim = c.dim;
    const F = c.queryFeatures;
    // Independent streams per part, so that changing one size does not reshuffle the others.
    const rng = new Rng(c.seed);
    this.keys = new ProductKeys({ numKeys: c.memories, heads: c.heads, dimKey: c.dimKey, sharedKeys: c.sharedKeys, seed: rng.fork() });
    const limit = Math.sqrt(6 / (c.dim + F));
    this.queryWeight = variableFrom(rng.fork().fillUniform(new Float32Array(c.dim * F), -limit, limit), [c.dim, F], true);
    this.queryNorm =
      c.queryNorm === 'batch' ? (new QueryNorm({ kind: 'batch', features: F, momentum: c.normMomentum, eps: c.normEps, reductions: 'matmul' }) as PkmQueryNorm) : null;
    const tables = createPkmTables(c, rng.fork().int(2 ** 31));
    this.values = tables.values;
    this.valueGrad = tables.valueGrad;
    this.valueOptimizer = tables.valueOptimizer;
    this.usage = new UsageAccumulator(c.memories, { count: c.heads, perHead: c.topK });
  }

  /** The parameters as tensors, for `pkmForward`. */
  tensors(): PkmTensors {
    this.checkAlive();
    const n = this.queryNorm;
    return {
      queryWeight: this.queryWeight as tf.Variable<tf.Rank.R2>,
      queryNorm: n ? { weight: n.weight, bias: n.bias, runningMean: n.runningMean, runningVar: n.runningVar } : null,
      keys: this.keys,
      values: this.values,
    };
  }

  apply(x: tf.Tensor3D, mode: ApplyMode): FeedForwardOutput {
    this.checkAlive();
    const [B, S] = checkInput3D('pkm', x, this.dim);
    const T = B * S;
    const n = this.queryNorm;
    return tf.tidy(() => {
      const result = pkmForward(tf.reshape(x, [T, this.dim]), this.tensors(), this.config, mode.training, this.valueGrad, {
        onBatchStats: n ? (stats) => updateRunningStats(n.runningMean, n.runningVar, stats, T, this.config.normMomentum) : undefined,
      });
      if (this.usage.active) this.usage.add(result.indices as Int32Array, result.weights.dataSync() as Float32Array);
      return { y: tf.reshape(result.y, [B, S, this.dim]) as tf.Tensor3D };
    });
  }

  /** Wq, BN gamma and beta, the sub-keys (dense, for the model's optimizer). */
  trainableVariables(): tf.Variable[] {
    this.checkAlive();
    return [this.queryWeight, ...(this.queryNorm ? [this.queryNorm.weight, this.queryNorm.bias] : []), ...this.keys.variables()];
  }

  /** Applies the value optimizer to the rows touched since the last call (lr times `lrScale`), then clears their gradients. */
  sparseStep(lrScale: number): void {
    this.checkAlive();
    this.valueOptimizer.step(this.values, this.valueGrad, lrScale);
  }

  zeroSparseGrads(): void {
    this.valueGrad.clear();
  }

  /**
   * Forward FLOPs per token (multiply-add = 2): query 2 D F + sub-key scores 2 h 2 n dk +
   * candidate sums h c^2 + value read 2 h k D. BN, softmax and top-k comparisons are not counted.
   */
  flopsPerToken(): number {
    const { dim: D, heads: h, topK: k, dimKey: dk, subKeys: s, candidateK: c, queryFeatures: F } = this.config;
    return 2 * D * F + 2 * h * 2 * s * dk + h * c * c + 2 * h * k * D;
  }

  private denseParams(): number {
    const { dim: D, heads: h, dimKey: dk, subKeys: s, queryFeatures: F, sharedKeys } = this.config;
    return D * F + (this.queryNorm ? 2 * F : 0) + (sharedKeys ? 1 : h) * 2 * s * dk;
  }

  /** Wq, BN gamma/beta, every sub-key (all are scored), and the h*k value rows read. */
  activeParamsPerToken(): number {
    return this.denseParams() + this.config.heads * this.config.topK * this.config.dim;
  }

  totalParams(): number {
    return this.denseParams() + this.config.memories * this.config.dim;
  }

  /** Starts accumulating, per memory slot, the softmax weights of its reads (and their count); host tables only. */
  startUsage(options: UsageOptions = {}): void {
    if (this.values.placement === 'device') {
      throw new Error(`pkm: startUsage reads the slots of every forward pass synchronously, which the ${tf.getBackend()} engine cannot do; run it on wasm or cpu (checkpoints load on any engine)`);
    }
    this.usage.start(options);
  }

  stopUsage(): UsageStatsReport {
    return this.usage.stop();
  }

  private denseNamed(): [string, tf.Variable][] {
    const n = this.queryNorm;
    return [
      ['query.weight', this.queryWeight],
      ...(n
        ? ([
            ['query_norm.weight', n.weight],
            ['query_norm.bias', n.bias],
            ['query_norm.running_mean', n.runningMean],
            ['query_norm.running_var', n.runningVar],
          ] as [string, tf.Variable][])
        : []),
      ['keys.sub_keys1', this.keys.subKeys1],
      ['keys.sub_keys2', this.keys.subKeys2],
    ];
  }

  /**
   * Makes `stateEntries` possible: on a device engine it reads every variable, the value table and
   * the optimizer's slots back to the host once (asynchronously); elsewhere it does nothing. Await
   * it after the last step and before `stateEntries`.
   */
  async prepareState(): Promise<void> {
    this.checkAlive();
    await makeReadable(this.denseNamed().map(([, v]) => v));
    for (const part of [this.values, this.valueOptimizer]) await part.prepareState();
  }

  /**
   * `query.weight` [D, F], `query_norm.{weight,bias,running_mean,running_var}` [F], `keys.sub_keys1`,
   * `keys.sub_keys2` [H', n, dk], `values` [N, D] and the value optimizer's state
   * (`values.adam.m`, `values.adam.v` [N, D], `values.adam.steps` [N]). The table and optimizer
   * entries are live views of the layer's memory (no copy of gigabytes): write them out before the
   * next step. On a device engine, await `prepareState()` first.
   */
  stateEntries(prefix: string): NamedArray[] {
    this.checkAlive();
    return [...this.denseNamed().map(([name, v]) => variableEntry(prefix + name, v)), ...this.values.stateEntries(prefix), ...this.valueOptimizer.stateEntries(prefix)];
  }

  /** Restores `stateEntries`; every entry is checked before anything changes. */
  loadStateEntries(prefix: string, get: StateEntryGetter): void {
    this.checkAlive();
    const expected: ExpectedEntry[] = [
      ...this.denseNamed().map(([name, v]) => ({ name: prefix + name, shape: v.shape, dtypes: ['F32', 'F64'] })),
      { name: prefix + this.values.name, shape: [this.values.rows, this.values.dim], dtypes: ['F32', 'F16', 'BF16'] },
      ...this.valueOptimizer.stateEntries(prefix).map((e) => ({ name: e.name, shape: e.shape, dtypes: [e.dtype] })),
    ];
    checkEntries(expected, get);
    const dense = this.denseNamed().map(([name, v]) => [v, requireEntry(get, prefix + name, v.shape)] as const);
    this.values.loadStateEntries(prefix, get);
    this.valueOptimizer.loadStateEntries(prefix, get);
    tf.tidy(() => {
      for (const [v, data] of dense) v.assign(tf.tensor(data, v.shape, 'float32'));
    });
    this.valueGrad.clear();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.keys.dispose();
    this.queryWeight.dispose();
    this.queryNorm?.dispose();
    this.valueOptimizer.dispose();
    this.values.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('pkm: used after dispose()');
  }
}
