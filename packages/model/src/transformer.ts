// A decoder-only transformer language model: token embedding, rotary or learned positions, L
// pre-norm blocks (causal multi-head attention, then a pluggable feed-forward layer), a final norm
// and the output projection (the transposed token embedding by default).
//
// Axes: B batch, S sequence (<= seqLen), T = B*S tokens, D model width, A heads, Dh = D/A head width,
// V vocabulary. The residual stream is kept as [T, D] rows so that every projection is one plain
// 2D matMul with weights stored [in, out]; FFW layers see it as [B, S, D].
import * as tf from '@tensorflow/tfjs-core';
import { Rng, currentBackend, linear, makeReadable, onDevice } from '@peer/backend';
import type { NamedArray } from '@peer/expert-store';
import { modelFlopsPerToken, modelParamCounts, type FeedForwardCosts, type ParamCounts } from './accounting.js';
import { causalMask, causalSelfAttention, type AttentionMode } from './causal-attention.js';
import { blockKinds, parseModelConfig, type ModelConfig, type ModelConfigInput } from './config.js';
import { crossEntropy } from './cross-entropy.js';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { layerNorm, rmsNorm } from './norm.js';
import { createFeedForward, registeredFeedForwardKinds } from './registry.js';
import { ropeTables, rotateHalfMatrix, type RopeFactors } from './rope.js';
import { sampleToken } from './sampling.js';

export interface TransformerOptions {
  /**
   * How attention multiplies the per-(head, sequence) matrices: 'batched' (one batched matMul),
   * 'sliced' (cut in JS, one 2D matMul each: for the built-in wasm kernel, whose batched matMul runs
   * a slow loop), or 'auto' (default: batched, unless the engine is wasm without @peer/backend's
   * per-batch matMul fix). Results agree to float32 rounding.
   */
  attention?: 'auto' | AttentionMode;
}

export interface ForwardMode {
  /** Training enables dropout, batch statistics and auxiliary losses in the FFW layers. */
  training: boolean;
}

export interface LossOutput {
  /** Mean next-token cross entropy (nats). */
  loss: tf.Scalar;
  /** Sum of the FFW layers' auxiliary losses (already weighted); 0 when there are none. */
  auxLoss: tf.Scalar;
}

export interface GenerateOptions {
  /** Number of tokens to generate. */
  maxNewTokens: number;
  /** 0 = greedy; default 1. */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  /** Seed of the sampling stream; default 0. */
  seed?: number;
}

export type { ParamCounts } from './accounting.js';

interface NormParams {
  gamma: tf.Variable;
  beta?: tf.Variable;
}

interface Block {
  norm1: NormParams;
  /** [D, 3D]: queries, keys, values (each D columns, head h at h*Dh..h*Dh+Dh-1). */
  qkv: tf.Variable;
  /** [D, D] */
  proj: tf.Variable;
  norm2: NormParams;
  ffw: FeedForwardLayer;
}

/** A named dense variable of the model (FFW variables are named by their layer's state entries). */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

const INIT_STD = 0.02;

/**
 * Whether @peer/backend's wasm fixes run batched matMuls as one 2D product per batch (then one
 * batched matMul beats cutting the slices in JS: no copies). The built-in wasm kernel does not.
 */
function wasmRunsBatchedMatMulPerBatch(): boolean {
  return currentBackend()?.fixes.some((f) => f.startsWith('BatchMatMul') && f.includes('per-batch')) ?? false;
}

function normalVariable(rng: Rng, shape: number[], std: number): tf.Variable {
  const init = tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), 0, std), shape);
  const v = tf.variable(init, true);
  init.dispose();
  return v;
}

function constantVariable(shape: number[], value: number): tf.Variable {
  const init = tf.fill(shape, value);
  const v = tf.variable(init, true);
  init.dispose();
  return v;
}

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export class TransformerLM {
  readonly config: ModelConfig;
  private readonly attentionMode: 'auto' | AttentionMode;
  private readonly tokenEmbedding: tf.Variable;
  private readonly positionEmbedding: tf.Variable | undefined;
  private readonly blocks: Block[] = [];
  private readonly finalNorm: NormParams;
  private readonly outputProjection: tf.Variable | undefined;
  private readonly mask: tf.Tensor2D;
  /** Rotary factors [seqLen, Dh] and the rotation [Dh, Dh]; the query ones carry the 1/sqrt(Dh) score scale. */
  private readonly rope: { q: RopeFactors; k: RopeFactors } | undefined;
  private dropoutRng: Rng;
  private disposed = false;

  constructor(config: ModelConfigInput | ModelConfig, options: TransformerOptions = {}) {
    this.config = parseModelConfig(config);
    const mode = options.attention ?? 'auto';
    if (!['auto', 'sliced', 'batched'].includes(mode)) {
      throw new Error(`TransformerLM: options.attention must be 'auto', 'sliced' or 'batched', got ${JSON.stringify(mode)}`);
    }
    this.attentionMode = mode;
    const c = this.config;
    const kinds = blockKinds(c);
    const registered = registeredFeedForwardKinds();
    const missing = kinds.findIndex((k) => !registered.includes(k));
    if (missing >= 0) {
      throw new Error(
        `no feed-forward layer is registered for kind '${kinds[missing]}' (ffw.kind, block ${missing}): ` +
          `call registerFeedForward('${kinds[missing]}', factory) before creating the model (registered: ${registered.join(', ') || 'none'})`,
      );
    }

    const created: { dispose(): void }[] = [];
    const track = <T extends { dispose(): void }>(x: T): T => {
      created.push(x);
      return x;
    };
    try {
      const { dim: D, vocabSize: V, seqLen: S, layers: L } = c;
      const Dh = D / c.heads;
      const rng = new Rng(c.seed);
      const norm = (): NormParams => ({
        gamma: track(constantVariable([D], 1)),
        ...(c.norm === 'layernorm' ? { beta: track(constantVariable([D], 0)) } : {}),
      });
      this.tokenEmbedding = track(normalVariable(rng, [V, D], INIT_STD));
      this.positionEmbedding = c.positions === 'learned' ? track(normalVariable(rng, [S, D], INIT_STD)) : undefined;
      for (let i = 0; i < L; i++) {
        const norm1 = norm();
        const qkv = track(normalVariable(rng, [D, 3 * D], INIT_STD));
        // GPT-2: residual projections scaled by 1/sqrt(2L) so the stream's variance does not grow with depth.
        const proj = track(normalVariable(rng, [D, D], INIT_STD / Math.sqrt(2 * L)));
        const norm2 = norm();
        const kind = kinds[i]!;
        // Dense blocks get the dense width (and ffw.options too when the whole model is dense).
        const options = kind === 'dense' ? { hidden: c.ffw.hidden, ...(c.ffw.kind === 'dense' ? c.ffw.options : {}) } : c.ffw.options;
        const ffw = track(createFeedForward(kind, { dim: D, blockIndex: i, seed: rng.int(2 ** 31), options }));
        if (ffw.kind !== kind) throw new Error(`the '${kind}' factory built a layer of kind '${ffw.kind}' (block ${i})`);
        this.blocks.push({ norm1, qkv, proj, norm2, ffw });
      }
      this.finalNorm = norm();
      this.outputProjection = c.tieEmbeddings ? undefined : track(normalVariable(rng, [D, V], INIT_STD));
      this.dropoutRng = new Rng(rng.int(2 ** 31));
      this.mask = track(causalMask(S));
      if (c.positions === 'rope') {
        const q = ropeTables(S, Dh, c.ropeBase, 1 / Math.sqrt(Dh));
        const k = ropeTables(S, Dh, c.ropeBase);
        const rotation = track(tf.tensor2d(rotateHalfMatrix(Dh), [Dh, Dh]));
        this.rope = {
          q: { cos: track(tf.tensor2d(q.cos, [S, Dh])), sin: track(tf.tensor2d(q.sin, [S, Dh])), rotation },
          k: { cos: track(tf.tensor2d(k.cos, [S, Dh])), sin: track(tf.tensor2d(k.sin, [S, Dh])), rotation },
        };
      }
    } catch (err) {
      for (const x of created) x.dispose();
      throw err;
    }
  }

  // ---- forward ----

  /** Next-token logits [B, S, V] for int32 tokens [B, S] (S <= seqLen). */
  logits(tokens: tf.Tensor2D, mode: ForwardMode = { training: false }): tf.Tensor3D {
    this.assertLive();
    const [B, S] = this.checkTokens(tokens, 'tokens');
    return tf.tidy(() => {
      const { hidden } = this.forwardHidden(tokens, mode.training);
      return tf.reshape(this.project(hidden), [B, S, this.config.vocabSize]);
    });
  }

  /**
   * Mean cross entropy of the logits at every position against `targets` (int32 [B, S], usually the
   * inputs shifted by one), and the FFW layers' auxiliary losses. Optimize `loss + auxLoss`.
   */
  loss(inputs: tf.Tensor2D, targets: tf.Tensor2D, mode: ForwardMode = { training: false }): LossOutput {
    this.assertLive();
    const [B, S] = this.checkTokens(inputs, 'inputs');
    if (targets.rank !== 2 || targets.shape[0] !== B || targets.shape[1] !== S) {
      throw new Error(`TransformerLM.loss: targets must have the shape of inputs ${describeShape(inputs.shape)}, got ${describeShape(targets.shape)}`);
    }
    this.checkTokens(targets, 'targets');
    return tf.tidy(() => {
      const { hidden, auxLosses } = this.forwardHidden(inputs, mode.training);
      const loss = crossEntropy(this.project(hidden), tf.reshape(targets, [B * S]) as tf.Tensor1D);
      const auxLoss = auxLosses.length === 0 ? tf.scalar(0) : auxLosses.length === 1 ? auxLosses[0]! : tf.addN(auxLosses);
      return { loss, auxLoss: auxLoss as tf.Scalar };
    });
  }

  /** [T, D] final-norm hidden states and the auxiliary losses; call inside a tidy. */
  private forwardHidden(tokens: tf.Tensor2D, training: boolean): { hidden: tf.Tensor2D; auxLosses: tf.Scalar[] } {
    const c = this.config;
    const [B, S] = tokens.shape;
    const T = B * S;
    const D = c.dim;
    const dropout = (x: tf.Tensor2D): tf.Tensor2D =>
      training && c.dropout > 0 ? (tf.dropout(x, c.dropout, undefined, this.dropoutRng.int(2 ** 31)) as tf.Tensor2D) : x;

    let h = tf.gather(this.tokenEmbedding, tf.reshape(tokens, [T])) as tf.Tensor2D;
    if (this.positionEmbedding) {
      const positions = tf.slice(this.positionEmbedding, [0, 0], [S, D]);
      h = tf.reshape(tf.add(tf.reshape(h, [B, S, D]), positions), [T, D]);
    }
    h = dropout(h);
    const rows = (f: RopeFactors): RopeFactors => ({ cos: this.firstRows(f.cos, S), sin: this.firstRows(f.sin, S), rotation: f.rotation });
    const rope = this.rope && { q: rows(this.rope.q), k: rows(this.rope.k) };
    const mask = S === c.seqLen ? this.mask : (tf.slice(this.mask, [0, 0], [S, S]) as tf.Tensor2D);
    const attention = {
      batch: B,
      seq: S,
      heads: c.heads,
      headDim: D / c.heads,
      mask,
      ...(rope ? { rope } : {}),
      mode: this.resolveAttentionMode(),
    };
    const auxLosses: tf.Scalar[] = [];
    for (const block of this.blocks) {
      const qkv = linear(this.norm(h, block.norm1), block.qkv as tf.Tensor2D);
      const attended = causalSelfAttention(qkv, attention);
      h = tf.add(h, dropout(linear(attended, block.proj as tf.Tensor2D)));
      const out = block.ffw.apply(tf.reshape(this.norm(h, block.norm2), [B, S, D]), { training });
      if (out.auxLoss) auxLosses.push(out.auxLoss);
      h = tf.add(h, dropout(tf.reshape(out.y, [T, D])));
    }
    return { hidden: this.norm(h, this.finalNorm), auxLosses };
  }

  /** Logits [T, V] of hidden rows [T, D]. */
  private project(hidden: tf.Tensor2D): tf.Tensor2D {
    return linear(hidden, (this.outputProjection ?? tf.transpose(this.tokenEmbedding)) as tf.Tensor2D);
  }

  private norm(x: tf.Tensor2D, p: NormParams): tf.Tensor2D {
    const eps = this.config.normEps;
    return p.beta ? layerNorm(x, p.gamma as tf.Tensor1D, p.beta as tf.Tensor1D, eps) : rmsNorm(x, p.gamma as tf.Tensor1D, eps);
  }

  private firstRows(table: tf.Tensor2D, rows: number): tf.Tensor2D {
    return rows === table.shape[0] ? table : (tf.slice(table, [0, 0], [rows, table.shape[1]]) as tf.Tensor2D);
  }

  private resolveAttentionMode(): AttentionMode {
    if (this.attentionMode !== 'auto') return this.attentionMode;
    return tf.getBackend() === 'wasm' && !wasmRunsBatchedMatMulPerBatch() ? 'sliced' : 'batched';
  }

  /** Checks dtype, shape and range; returns [B, S]. */
  private checkTokens(tokens: tf.Tensor, what: string): [number, number] {
    const c = this.config;
    if (!(tokens instanceof tf.Tensor) || tokens.rank !== 2 || tokens.dtype !== 'int32') {
      const got = tokens instanceof tf.Tensor ? `${tokens.dtype} ${describeShape(tokens.shape)}` : typeof tokens;
      throw new Error(`TransformerLM: ${what} must be an int32 tensor [batch, seq], got ${got}`);
    }
    const [B, S] = tokens.shape as [number, number];
    if (B < 1 || S < 1 || S > c.seqLen) {
      throw new Error(`TransformerLM: ${what} ${describeShape(tokens.shape)} needs batch >= 1 and 1 <= seq <= seqLen (${c.seqLen})`);
    }
    // A device engine cannot read the ids synchronously; there the caller checks the host array it
    // uploads (`checkTokenIds`), as the trainer does.
    if (!onDevice()) checkTokenIds(tokens.dataSync(), S, c.vocabSize, what);
    return [B, S];
  }

  // ---- generation ----

  /**
   * Continues `prompt` (token ids) by `maxNewTokens` tokens and returns the new tokens only. Greedy
   * at temperature 0; otherwise samples (optionally among the top k) from a stream seeded by
   * `seed`, so the same call returns the same tokens. The context is cropped to the last seqLen tokens.
   */
  generate(prompt: readonly number[], options: GenerateOptions): number[] {
    const g = this.startGeneration(prompt, options);
    for (let n = 0; n < options.maxNewTokens; n++) {
      const row = this.nextTokenLogits(g.tokens);
      const logits = row.dataSync();
      row.dispose();
      g.tokens.push(sampleToken(logits, g.sampling, g.rng));
    }
    return g.tokens.slice(prompt.length);
  }

  /** `generate` reading each step's logits asynchronously: works on every engine, device engines included. */
  async generateAsync(prompt: readonly number[], options: GenerateOptions): Promise<number[]> {
    const g = this.startGeneration(prompt, options);
    for (let n = 0; n < options.maxNewTokens; n++) {
      const row = this.nextTokenLogits(g.tokens);
      const logits = await row.data();
      row.dispose();
      g.tokens.push(sampleToken(logits, g.sampling, g.rng));
    }
    return g.tokens.slice(prompt.length);
  }

  /** Checks generate's arguments; the token list to extend, the sampling options and stream. */
  private startGeneration(prompt: readonly number[], options: GenerateOptions) {
    this.assertLive();
    const { maxNewTokens, temperature = 1, topK, seed = 0 } = options;
    const V = this.config.vocabSize;
    if (!Array.isArray(prompt) || prompt.length === 0) throw new Error('TransformerLM.generate: prompt must be a non-empty array of token ids');
    prompt.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`TransformerLM.generate: prompt[${i}] = ${t} is not a token id in [0, ${V})`);
    });
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new Error(`TransformerLM.generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    }
    if (!(temperature >= 0) || !Number.isFinite(temperature)) {
      throw new Error(`TransformerLM.generate: temperature must be a finite number >= 0, got ${temperature}`);
    }
    if (topK !== undefined && (!Number.isInteger(topK) || topK < 1)) {
      throw new Error(`TransformerLM.generate: topK must be a positive integer, got ${topK}`);
    }
    if (!Number.isInteger(seed)) throw new Error(`TransformerLM.generate: seed must be an integer, got ${seed}`);
    return { tokens: [...prompt], sampling: { temperature, ...(topK !== undefined ? { topK } : {}) }, rng: new Rng(seed) };
  }

  /** Logits [1, V] of the token after the last seqLen tokens of `tokens`. */
  private nextTokenLogits(tokens: readonly number[]): tf.Tensor2D {
    const context = tokens.slice(-this.config.seqLen);
    return tf.tidy(() => {
      const input = tf.tensor2d(context, [1, context.length], 'int32');
      const { hidden } = this.forwardHidden(input, false);
      return this.project(tf.slice(hidden, [context.length - 1, 0], [1, this.config.dim]) as tf.Tensor2D);
    });
  }

  // ---- parameters and accounting ----

  /** The model's own dense variables with their state names (FFW variables not included). */
  namedVariables(): NamedVariable[] {
    this.assertLive();
    const out: NamedVariable[] = [{ name: 'tok_emb.weight', variable: this.tokenEmbedding }];
    if (this.positionEmbedding) out.push({ name: 'pos_emb.weight', variable: this.positionEmbedding });
    const norm = (prefix: string, p: NormParams) => {
      out.push({ name: `${prefix}.weight`, variable: p.gamma });
      if (p.beta) out.push({ name: `${prefix}.bias`, variable: p.beta });
    };
    this.blocks.forEach((b, i) => {
      norm(`blocks.${i}.norm1`, b.norm1);
      out.push({ name: `blocks.${i}.attn.qkv.weight`, variable: b.qkv }, { name: `blocks.${i}.attn.proj.weight`, variable: b.proj });
      norm(`blocks.${i}.norm2`, b.norm2);
    });
    norm('norm_f', this.finalNorm);
    if (this.outputProjection) out.push({ name: 'lm_head.weight', variable: this.outputProjection });
    return out;
  }

  /** Every dense trainable variable, the FFW layers' included (for the dense optimizer). */
  trainableVariables(): tf.Variable[] {
    return [...this.namedVariables().map((n) => n.variable), ...this.blocks.flatMap((b) => b.ffw.trainableVariables())];
  }

  /** The feed-forward layer of each block, in block order. */
  feedForwards(): FeedForwardLayer[] {
    this.assertLive();
    return this.blocks.map((b) => b.ffw);
  }

  /** Applies the sparse tables' accumulated gradients in every FFW layer (see FeedForwardLayer.sparseStep). */
  sparseStep(lrScale: number): void {
    this.assertLive();
    if (!Number.isFinite(lrScale) || lrScale < 0) throw new Error(`TransformerLM.sparseStep: lrScale must be a finite number >= 0, got ${lrScale}`);
    for (const b of this.blocks) b.ffw.sparseStep(lrScale);
  }

  /** Drops the sparse tables' accumulated gradients in every FFW layer. */
  zeroSparseGrads(): void {
    this.assertLive();
    for (const b of this.blocks) b.ffw.zeroSparseGrads();
  }

  private ffwCosts(): FeedForwardCosts[] {
    return this.blocks.map(({ ffw }) => ({
      flopsPerToken: ffw.flopsPerToken(),
      totalParams: ffw.totalParams(),
      activeParamsPerToken: ffw.activeParamsPerToken(),
    }));
  }

  /** Forward FLOPs per token at the full context (formula in accounting.ts). */
  flopsPerToken(): number {
    this.assertLive();
    return modelFlopsPerToken(this.config, this.ffwCosts());
  }

  /** Training FLOPs per token: forward + backward = 3x the forward. */
  trainingFlopsPerToken(): number {
    return 3 * this.flopsPerToken();
  }

  paramCounts(): ParamCounts {
    this.assertLive();
    return modelParamCounts(this.config, this.ffwCosts());
  }

  // ---- state ----

  /**
   * Makes `stateEntries` work on a device engine: reads every dense variable and each FFW layer's
   * state asynchronously once (a no-op on wasm and cpu). Await it before `stateEntries` there.
   */
  async prepareState(): Promise<void> {
    this.assertLive();
    await makeReadable(this.namedVariables().map((n) => n.variable));
    for (const b of this.blocks) await b.ffw.prepareState?.();
  }

  /**
   * Every piece of state as named arrays: the dense weights (names from `namedVariables`, shapes
   * [in, out]), each FFW's entries under `blocks.<i>.ffw.`, and the dropout stream `rng.dropout`.
   * On a device engine, await `prepareState()` first.
   */
  stateEntries(): NamedArray[] {
    this.assertLive();
    const entries: NamedArray[] = this.namedVariables().map(({ name, variable }) => ({
      name,
      dtype: 'F32',
      shape: [...variable.shape],
      data: Float32Array.from(variable.dataSync() as Float32Array),
    }));
    this.blocks.forEach((b, i) => entries.push(...b.ffw.stateEntries(`blocks.${i}.ffw.`)));
    entries.push({ name: 'rng.dropout', dtype: 'I32', shape: [4], data: Int32Array.from(this.dropoutRng.state()) });
    return entries;
  }

  /** Restores `stateEntries`; the dense entries are all checked before any is assigned. */
  loadStateEntries(get: (name: string) => NamedArray | undefined): void {
    this.assertLive();
    const updates: [tf.Variable, Float32Array][] = [];
    for (const { name, variable } of this.namedVariables()) {
      const entry = get(name);
      if (!entry) throw new Error(`model state: entry '${name}' is missing`);
      if (entry.dtype !== 'F32') throw new Error(`model state: entry '${name}' has dtype ${entry.dtype}, expected F32`);
      if (entry.shape.length !== variable.rank || entry.shape.some((s, i) => s !== variable.shape[i]) || entry.data.length !== variable.size) {
        throw new Error(`model state: entry '${name}' has shape ${describeShape(entry.shape)}, expected ${describeShape(variable.shape)}`);
      }
      updates.push([variable, entry.data as Float32Array]);
    }
    const rngEntry = get('rng.dropout');
    if (!rngEntry || rngEntry.dtype !== 'I32' || rngEntry.data.length !== 4) {
      throw new Error(`model state: entry 'rng.dropout' is ${rngEntry ? `${rngEntry.dtype} ${describeShape(rngEntry.shape)}, expected I32 [4]` : 'missing'}`);
    }
    this.blocks.forEach((b, i) => b.ffw.loadStateEntries(`blocks.${i}.ffw.`, get));
    for (const [variable, data] of updates) tf.tidy(() => variable.assign(tf.tensor(data, variable.shape, 'float32')));
    this.dropoutRng = new Rng(Array.from(rngEntry.data as Int32Array));
  }

  dispose(): void {
    if (this.disposed) return;
    for (const { variable } of this.namedVariables()) variable.dispose();
    for (const b of this.blocks) b.ffw.dispose();
    this.mask.dispose();
    if (this.rope) tf.dispose([this.rope.q.cos, this.rope.q.sin, this.rope.k.cos, this.rope.k.sin, this.rope.q.rotation]);
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('TransformerLM: used after dispose()');
  }
}

/**
 * Throws naming the first id of `values` (row-major [rows, seq]) outside [0, vocabSize). The model
 * checks the tensors it gets on wasm and cpu; on a device engine whoever uploads host ids checks them.
 */
export function checkTokenIds(values: ArrayLike<number>, seq: number, vocabSize: number, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const t = values[i]!;
    if (t < 0 || t >= vocabSize) {
      throw new Error(`TransformerLM: ${what}[${Math.floor(i / seq)}, ${i % seq}] = ${t} is outside the vocabulary [0, ${vocabSize})`);
    }
  }
}
