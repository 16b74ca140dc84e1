// AdamW (decoupled weight decay, Loshchilov & Hutter) for the dense variables, with decay on
// matrices only. tf.train.adam has no decoupled decay and hides its moments; here they are plain
// variables that a checkpoint saves and restores exactly. The update itself is @peer/backend's
// `adamwUpdate` (torch.optim.AdamW's step; one fused pass on every thread on wasm).
import * as tf from '@tensorflow/tfjs-core';
import { adamwUpdate, makeReadable } from '@peer/backend';
import type { NamedArray } from '@peer/expert-store';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

function zerosVariable(shape: number[]): tf.Variable {
  const init = tf.zeros(shape);
  const v = tf.variable(init, false);
  // tf.variable keeps the initializer's tensor alive otherwise
  init.dispose();
  return v;
}

export class AdamW {
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  /** Number of updates applied so far (the bias corrections use step + 1). */
  step = 0;

  constructor(
    readonly variables: readonly tf.Variable[],
    readonly options: AdamWOptions,
  ) {
    this.m = variables.map((p) => zerosVariable(p.shape));
    this.v = variables.map((p) => zerosVariable(p.shape));
  }

  /** Whether weight decay applies: matrices (embeddings, projections), not gains, biases or norms. */
  static decays(p: tf.Variable): boolean {
    return p.rank >= 2;
  }

  /** Applies one update. `grads[i]` belongs to `variables[i]`; the caller owns and disposes them. */
  apply(grads: readonly tf.Tensor[], lr: number): void {
    if (grads.length !== this.variables.length) {
      throw new Error(`AdamW.apply: ${grads.length} gradients for ${this.variables.length} variables`);
    }
    const { beta1, beta2, eps, weightDecay } = this.options;
    const t = this.step + 1;
    for (let i = 0; i < this.variables.length; i++) {
      const p = this.variables[i]!;
      adamwUpdate(p, grads[i]!, this.m[i]!, this.v[i]!, { lr, beta1, beta2, eps, weightDecay: AdamW.decays(p) ? weightDecay : 0, step: t });
    }
    this.step = t;
  }

  /** Reads the moments once asynchronously so that `stateEntries` works on a device engine. */
  async prepareState(): Promise<void> {
    await makeReadable([...this.m, ...this.v]);
  }

  /** The moments as named arrays (`<prefix><i>/m`, `<prefix><i>/v`), i indexing `variables`; on a device engine await `prepareState` first. */
  stateEntries(prefix = 'optim/adamw/'): NamedArray[] {
    const out: NamedArray[] = [];
    for (let i = 0; i < this.variables.length; i++) {
      for (const [kind, slot] of [['m', this.m[i]!], ['v', this.v[i]!]] as const) {
        out.push({ name: `${prefix}${i}/${kind}`, dtype: 'F32', shape: [...slot.shape], data: slot.dataSync() as Float32Array });
      }
    }
    return out;
  }

  /** Restores moments saved by `stateEntries`; throws naming the entry when one is missing or misshapen. */
  loadStateEntries(step: number, get: (name: string) => NamedArray | undefined, prefix = 'optim/adamw/'): void {
    for (let i = 0; i < this.variables.length; i++) {
      for (const [kind, slot] of [['m', this.m[i]!], ['v', this.v[i]!]] as const) {
        const name = `${prefix}${i}/${kind}`;
        const entry = get(name);
        if (!entry) throw new Error(`optimizer state '${name}' is missing`);
        if (entry.shape.join(',') !== slot.shape.join(',') || entry.data.length !== slot.size) {
          throw new Error(`optimizer state '${name}' has shape [${entry.shape}], expected [${slot.shape}]`);
        }
        const data = entry.data instanceof Float32Array ? entry.data : Float32Array.from(entry.data as ArrayLike<number>);
        tf.tidy(() => slot.assign(tf.tensor(data, slot.shape, 'float32')));
      }
    }
    this.step = step;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}
