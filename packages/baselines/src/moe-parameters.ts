// The parameters both MoE layers share: a linear router and E expert FFWs, as tfjs variables.
// Each expert's weights are variables of their own (2-D matMuls need no slicing of a stacked
// tensor, which is slow on wasm); files hold them stacked as [E, ...].
//
// Axes: D model width, E experts, H expert hidden width.
//
// Initialization (seeded, draws in this order): router N(0, 0.1 / D) (Switch's reduced scale); W1
// then W2 Glorot-uniform, U(+-sqrt(6 / (D + H))), as the dense FFW, expert after expert; biases 0.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';
import { Rng } from '@peer/backend';
import type { StateEntryGetter } from '@peer/feed-forward';
import { requireEntry, variableEntry } from './layer-state.js';
import type { ExpertParams } from './moe-expert-mixture.js';

export interface MoeShape {
  dim: number;
  experts: number;
  hidden: number;
  bias: boolean;
  seed: number;
}

function variableFrom(values: Float32Array, shape: number[]): tf.Variable {
  return tf.tidy(() => tf.variable(tf.tensor(values, shape, 'float32'), true));
}

/** E variables of `shape` from one stacked array [E * size]. */
function perExpert(stacked: Float32Array, experts: number, shape: number[]): tf.Variable[] {
  const size = shape.reduce((a, b) => a * b, 1);
  return Array.from({ length: experts }, (_, e) => variableFrom(stacked.subarray(e * size, (e + 1) * size), shape));
}

type Group = 'w1' | 'b1' | 'w2' | 'b2';

export class MoeParameters {
  /** [D, E] */
  readonly router: tf.Variable;
  /** E x [D, H] */
  readonly w1: tf.Variable[];
  /** E x [H], empty without biases */
  readonly b1: tf.Variable[];
  /** E x [H, D] */
  readonly w2: tf.Variable[];
  /** E x [D], empty without biases */
  readonly b2: tf.Variable[];

  constructor(readonly shape: MoeShape) {
    const { dim: D, experts: E, hidden: H, bias, seed } = shape;
    const rng = new Rng(seed);
    this.router = variableFrom(rng.fillNormal(new Float32Array(D * E), 0, Math.sqrt(0.1 / D)), [D, E]);
    const glorot = Math.sqrt(6 / (D + H));
    this.w1 = perExpert(rng.fillUniform(new Float32Array(E * D * H), -glorot, glorot), E, [D, H]);
    this.w2 = perExpert(rng.fillUniform(new Float32Array(E * H * D), -glorot, glorot), E, [H, D]);
    this.b1 = bias ? perExpert(new Float32Array(E * H), E, [H]) : [];
    this.b2 = bias ? perExpert(new Float32Array(E * D), E, [D]) : [];
  }

  variables(): tf.Variable[] {
    return [this.router, ...this.w1, ...this.b1, ...this.w2, ...this.b2];
  }

  experts(): ExpertParams {
    return {
      w1: this.w1 as tf.Variable<tf.Rank.R2>[],
      b1: this.shape.bias ? (this.b1 as tf.Variable<tf.Rank.R1>[]) : null,
      w2: this.w2 as tf.Variable<tf.Rank.R2>[],
      b2: this.shape.bias ? (this.b2 as tf.Variable<tf.Rank.R1>[]) : null,
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

  private groups(): [string, Group, number[]][] {
    const { dim: D, hidden: H, bias } = this.shape;
    return [
      ['experts.w1', 'w1', [D, H]],
      ...(bias ? [['experts.b1', 'b1', [H]] as [string, Group, number[]]] : []),
      ['experts.w2', 'w2', [H, D]],
      ...(bias ? [['experts.b2', 'b2', [D]] as [string, Group, number[]]] : []),
    ];
  }

  /** `router.weight` [D, E], `experts.w1` [E, D, H], `experts.b1` [E, H], `experts.w2` [E, H, D], `experts.b2` [E, D]. */
  stateEntries(prefix: string): NamedArray[] {
    const E = this.shape.experts;
    return [
      variableEntry(prefix + 'router.weight', this.router),
      ...this.groups().map(([name, group, shape]): NamedArray => {
        const size = shape.reduce((a, b) => a * b, 1);
        const data = new Float32Array(E * size);
        this[group].forEach((v, e) => data.set(v.dataSync() as Float32Array, e * size));
        return { name: prefix + name, dtype: 'F32', shape: [E, ...shape], data };
      }),
    ];
  }

  loadStateEntries(prefix: string, get: StateEntryGetter): void {
    const E = this.shape.experts;
    // Read and check every entry before assigning any, so that a bad file leaves the layer unchanged.
    const router = requireEntry(get, prefix + 'router.weight', this.router.shape);
    const groups = this.groups().map(([name, group, shape]) => [group, shape, requireEntry(get, prefix + name, [E, ...shape])] as const);
    tf.tidy(() => {
      this.router.assign(tf.tensor(router, this.router.shape, 'float32'));
      for (const [group, shape, data] of groups) {
        const size = shape.reduce((a, b) => a * b, 1);
        this[group].forEach((v, e) => v.assign(tf.tensor(data.subarray(e * size, (e + 1) * size), shape, 'float32')));
      }
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
