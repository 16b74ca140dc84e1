// The parameters both MoE layers share: a linear router and E expert FFWs, as tfjs variables.
//
// Axes: D model width, E experts, H expert hidden width.
//
// Initialization (seeded, draws in this order): router N(0, 0.1 / D) (Switch's reduced scale); W1 and
// W2 Glorot-uniform, U(+-sqrt(6 / (D + H))), as the dense FFW, expert by expert; biases 0.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';
import { Rng } from '@peer/backend';
import type { StateEntryGetter } from './feed-forward-types.js';
import { requireEntry, variableEntry } from './layer-state.js';
import type { ExpertParams } from './moe-expert-mixture.js';

export interface MoeShape {
  dim: number;
  experts: number;
  hidden: number;
  bias: boolean;
  seed: number;
}

function initVariable(shape: number[], fill: (values: Float32Array) => void): tf.Variable {
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(values);
  return tf.tidy(() => tf.variable(tf.tensor(values, shape, 'float32'), true));
}

export class MoeParameters {
  /** [D, E] */
  readonly router: tf.Variable;
  /** [E, D, H] */
  readonly w1: tf.Variable;
  /** [E, H] or null */
  readonly b1: tf.Variable | null;
  /** [E, H, D] */
  readonly w2: tf.Variable;
  /** [E, D] or null */
  readonly b2: tf.Variable | null;

  constructor(readonly shape: MoeShape) {
    const { dim: D, experts: E, hidden: H, bias, seed } = shape;
    const rng = new Rng(seed);
    this.router = initVariable([D, E], (v) => rng.fillNormal(v, 0, Math.sqrt(0.1 / D)));
    const glorot = Math.sqrt(6 / (D + H));
    this.w1 = initVariable([E, D, H], (v) => rng.fillUniform(v, -glorot, glorot));
    this.w2 = initVariable([E, H, D], (v) => rng.fillUniform(v, -glorot, glorot));
    this.b1 = bias ? initVariable([E, H], () => {}) : null;
    this.b2 = bias ? initVariable([E, D], () => {}) : null;
  }

  variables(): tf.Variable[] {
    return [this.router, this.w1, ...(this.b1 ? [this.b1] : []), this.w2, ...(this.b2 ? [this.b2] : [])];
  }

  experts(): ExpertParams {
    return {
      w1: this.w1 as tf.Variable<tf.Rank.R3>,
      b1: this.b1 as tf.Variable<tf.Rank.R2> | null,
      w2: this.w2 as tf.Variable<tf.Rank.R3>,
      b2: this.b2 as tf.Variable<tf.Rank.R2> | null,
    };
  }

  /** Parameters of one expert: 2 D H (+ H + D with biases). */
  paramsPerExpert(): number {
    const { dim: D, hidden: H, bias } = this.shape;
    return 2 * D * H + (bias ? H + D : 0);
  }

  routerParams(): number {
    return this.shape.dim * this.shape.experts;
  }

  totalParams(): number {
    return this.routerParams() + this.shape.experts * this.paramsPerExpert();
  }

  private named(): [string, tf.Variable][] {
    return [
      ['router.weight', this.router],
      ['experts.w1', this.w1],
      ...(this.b1 ? [['experts.b1', this.b1] as [string, tf.Variable]] : []),
      ['experts.w2', this.w2],
      ...(this.b2 ? [['experts.b2', this.b2] as [string, tf.Variable]] : []),
    ];
  }

  /** `router.weight` [D, E], `experts.w1` [E, D, H], `experts.b1` [E, H], `experts.w2` [E, H, D], `experts.b2` [E, D]. */
  stateEntries(prefix: string): NamedArray[] {
    return this.named().map(([name, v]) => variableEntry(prefix + name, v));
  }

  loadStateEntries(prefix: string, get: StateEntryGetter): void {
    // Read and check every entry before assigning any, so that a bad file leaves the layer unchanged.
    const loaded = this.named().map(([name, v]) => [v, requireEntry(get, prefix + name, v.shape)] as const);
    tf.tidy(() => {
      for (const [v, data] of loaded) v.assign(tf.tensor(data, v.shape, 'float32'));
    });
  }

  dispose(): void {
    for (const v of this.variables()) v.dispose();
  }
}

/** z-loss of router logits [T, E]: mean_t logsumexp(logits_t)^2. */
export function routerZLoss(logits: tf.Tensor2D): tf.Scalar {
  return tf.mean(tf.square(tf.logSumExp(logits, 1)));
}
