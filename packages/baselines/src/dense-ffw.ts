// Dense feed-forward block: y = W2 sigma(W1 x + b1) + b2, or with GLU y = W2 (sigma(W1 x + b1) * (W3 x + b3)) + b2.
// Axes: B batch, S sequence, T = B*S tokens, D model width, H hidden width.
// Weights are stored [in, out] so that the forward pass runs plain 2D matMuls (no transposes) on
// [T, D] rows: the fast path of every engine, wasm in particular.
import * as tf from '@tensorflow/tfjs-core';
import { Rng, activate, columnSums, linear, makeReadable } from '@peer/backend';
import type { NamedArray } from '@peer/expert-store';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { parseDenseFfwConfig, type DenseFfwConfig, type DenseFfwConfigInput } from './dense-ffw-config.js';

/** The parameters of a dense FFW, as tensors (the layer's variables, or any stand-ins for testing). */
export interface DenseFfwParams {
  /** [D, H] */
  w1: tf.Tensor2D;
  /** [H], absent without bias */
  b1?: tf.Tensor1D;
  /** [H, D] */
  w2: tf.Tensor2D;
  /** [D], absent without bias */
  b2?: tf.Tensor1D;
  /** [D, H], GLU only */
  w3?: tf.Tensor2D;
  /** [H], GLU with bias only */
  b3?: tf.Tensor1D;
}

const PARAM_NAMES = ['w1', 'b1', 'w2', 'b2', 'w3', 'b3'] as const;
type ParamName = (typeof PARAM_NAMES)[number];

/** x + b over rows, with the bias gradient from `columnSums`. */
const addBias = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, b] = args as [tf.Tensor2D, tf.Tensor1D];
  return {
    value: tf.add(x, b),
    // A new handle on dy (reshape shares the data), never dy itself: the tape disposes both.
    gradFunc: (dy: tf.Tensor) => [tf.reshape(dy, dy.shape), columnSums(dy as tf.Tensor2D)],
  };
});

function affine(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D | undefined): tf.Tensor2D {
  const y = linear(x, w);
  return b ? (addBias(y, b) as tf.Tensor2D) : y;
}

/**
 * The block as a pure function of its input rows [T, D] and parameters; differentiable in all of
 * them. `DenseFfw.apply` calls it with the layer's variables.
 */
export function denseFfwForward(
  x: tf.Tensor2D,
  params: DenseFfwParams,
  options: Pick<DenseFfwConfig, 'activation' | 'glu'>,
): tf.Tensor2D {
  let hidden = activate(affine(x, params.w1, params.b1), options.activation);
  if (options.glu) {
    if (!params.w3) throw new Error('denseFfwForward: glu needs params.w3');
    hidden = tf.mul(hidden, affine(x, params.w3, params.b3));
  }
  return affine(hidden, params.w2, params.b2);
}

function glorotUniform(rng: Rng, fanIn: number, fanOut: number): tf.Tensor2D {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return tf.tensor2d(rng.fillUniform(new Float32Array(fanIn * fanOut), -limit, limit), [fanIn, fanOut]);
}

function variableFrom<T extends tf.Tensor>(init: T): tf.Variable {
  const v = tf.variable(init, true);
  // tf.variable copies; the initializer would otherwise stay alive.
  init.dispose();
  return v;
}

/**
 * The dense FFW baseline. Implements the `FeedForwardLayer` contract (kind 'dense'): no routing,
 * no sparse tables, so `sparseStep` and `zeroSparseGrads` do nothing.
 */
export class DenseFfw implements FeedForwardLayer {
  readonly kind = 'dense' as const;
  readonly config: DenseFfwConfig;
  private readonly vars: Partial<Record<ParamName, tf.Variable>> = {};
  private disposed = false;

  constructor(config: DenseFfwConfigInput) {
    this.config = parseDenseFfwConfig(config);
    const { dim, hidden, glu, bias, seed } = this.config;
    const rng = new Rng(seed);
    // Draw order is fixed (w1, w2, w3) so a seed always gives the same weights.
    this.vars.w1 = variableFrom(glorotUniform(rng, dim, hidden));
    this.vars.w2 = variableFrom(glorotUniform(rng, hidden, dim));
    if (glu) this.vars.w3 = variableFrom(glorotUniform(rng, dim, hidden));
    if (bias) {
      this.vars.b1 = variableFrom(tf.zeros([hidden]));
      this.vars.b2 = variableFrom(tf.zeros([dim]));
      if (glu) this.vars.b3 = variableFrom(tf.zeros([hidden]));
    }
  }

  /** Model width D. */
  get dim(): number {
    return this.config.dim;
  }

  /** Hidden width H. */
  get hidden(): number {
    return this.config.hidden;
  }

  /** The current parameters (the variables themselves; do not dispose them). */
  params(): DenseFfwParams {
    this.assertLive();
    return this.vars as DenseFfwParams;
  }

  /** Forward on [B, S, D]. The block has no train/eval difference and no auxiliary loss. */
  apply(x: tf.Tensor3D, _mode: { training: boolean } = { training: false }): { y: tf.Tensor3D } {
    this.assertLive();
    const [b, s, d] = x.shape;
    if (x.rank !== 3 || d !== this.config.dim) {
      throw new Error(`DenseFfw.apply: x must be [batch, seq, ${this.config.dim}], got [${x.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const y = denseFfwForward(tf.reshape(x, [b * s, d]), this.params(), this.config);
      return { y: tf.reshape(y, [b, s, d]) };
    });
  }

  trainableVariables(): tf.Variable[] {
    this.assertLive();
    return PARAM_NAMES.flatMap((n) => (this.vars[n] ? [this.vars[n]] : []));
  }

  sparseStep(_lrScale: number): void {}

  zeroSparseGrads(): void {}

  /** Forward FLOPs per token: 2 per multiply-add of the matMuls (2 of D x H, 3 with GLU); biases and sigma not counted. */
  flopsPerToken(): number {
    const { dim, hidden, glu } = this.config;
    return 2 * dim * hidden * (glu ? 3 : 2);
  }

  activeParamsPerToken(): number {
    return this.totalParams();
  }

  totalParams(): number {
    const { dim, hidden, glu, bias } = this.config;
    const weights = dim * hidden * (glu ? 3 : 2);
    const biases = bias ? hidden + dim + (glu ? hidden : 0) : 0;
    return weights + biases;
  }

  /** Reads the variables once asynchronously so that `stateEntries` works on a device engine. */
  async prepareState(): Promise<void> {
    this.assertLive();
    await makeReadable(this.trainableVariables());
  }

  /** Entries `<prefix>w1` [D, H], `b1` [H], `w2` [H, D], `b2` [D], and with GLU `w3` [D, H], `b3` [H]; float32. */
  stateEntries(prefix: string): NamedArray[] {
    this.assertLive();
    return PARAM_NAMES.flatMap((n) => {
      const v = this.vars[n];
      if (!v) return [];
      return [{ name: `${prefix}${n}`, dtype: 'F32' as const, shape: [...v.shape], data: Float32Array.from(v.dataSync()) }];
    });
  }

  /** Restores `stateEntries`; checks every entry before assigning any. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.assertLive();
    const updates: [tf.Variable, NamedArray][] = [];
    for (const n of PARAM_NAMES) {
      const v = this.vars[n];
      if (!v) continue;
      const name = `${prefix}${n}`;
      const entry = get(name);
      if (!entry) throw new Error(`dense FFW state: entry '${name}' is missing`);
      if (entry.dtype !== 'F32') throw new Error(`dense FFW state: entry '${name}' has dtype ${entry.dtype}, expected F32`);
      if (entry.shape.length !== v.shape.length || entry.shape.some((s, i) => s !== v.shape[i]) || entry.data.length !== v.size) {
        throw new Error(`dense FFW state: entry '${name}' has shape [${entry.shape.join(', ')}], expected [${v.shape.join(', ')}]`);
      }
      updates.push([v, entry]);
    }
    for (const [v, entry] of updates) {
      tf.tidy(() => v.assign(tf.tensor(entry.data as Float32Array, v.shape, 'float32')));
    }
  }

  dispose(): void {
    if (this.disposed) return;
    for (const n of PARAM_NAMES) this.vars[n]?.dispose();
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('DenseFfw: used after dispose()');
  }
}
