// Any FeedForwardLayer (PEER, PKM, MoE) as a tf.layers layer: usable in tf.sequential and the
// functional API, trained by model.fit / fitDataset, saved and loaded with its state.
//
// Axes: B batch, S sequence, D model width.
//
// The wrapped layer is built at `build` time, when the input width is known. Its dense tfjs variables
// become this layer's weights (the same variables, see AdoptedLayerVariable), so model.fit's optimizer
// trains them; its tables outside tfjs collect row gradients in backward, which `sparseStep(model)`
// (or the `sparseStepCallback`) applies after each batch.
import { randomInt } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { layers, type LayerVariable } from '@tensorflow/tfjs-layers';
import type { NamedArray } from '@peer/expert-store';
import { AdoptedLayerVariable } from './adopted-layer-variable.js';
import type { FeedForwardLayer, StateEntryGetter } from './feed-forward-layer.js';
import { STATE_FILE_KEY, STATE_ID_KEY, newStateId, registerLiveLayer, takeLoadedState, unregisterLiveLayer, type LoadedState, type StatefulTfLayer } from './layer-state-link.js';

/** The tf.layers base arguments the factories accept beside a layer's own config. */
export interface TfLayerArgs {
  /** Layer name (unique within a model); default `<class>_<n>`. */
  name?: string;
  /** Input shape without the batch axis, for the first layer of a tf.sequential: [D] or [S, D]. */
  inputShape?: (number | null)[];
  batchInputShape?: (number | null)[];
  batchSize?: number;
  /** false freezes the dense weights and drops the sparse gradients instead of applying them. */
  trainable?: boolean;
}

/** Keys of tf.layers' own LayerArgs (what `Layer.getConfig` writes), kept apart from the layer config. */
const BASE_KEYS = new Set(['name', 'inputShape', 'batchInputShape', 'batchSize', 'trainable', 'dtype', 'weights', 'inputDType']);

/** A wrapped layer's dense variable under the weight name it gets in model.json. */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
  trainable: boolean;
}

type ConfigDict = Record<string, unknown>;

export abstract class FeedForwardTfLayer<L extends FeedForwardLayer = FeedForwardLayer> extends layers.Layer implements StatefulTfLayer {
  /** The token model.json's config carries for the file-system handler (see layer-state-link). */
  readonly stateId: string;
  /** The wrapped layer's config as given (undefined fields dropped); `dim` is filled in at build. */
  protected readonly layerConfig: ConfigDict;
  private wrapped: L | undefined;
  private readonly adoptedNonTrainable: LayerVariable[] = [];
  private loadedState: LoadedState | undefined;
  private lastAuxLoss: tf.Scalar | undefined;

  constructor(config: object) {
    const base: ConfigDict = {};
    const own: ConfigDict = {};
    for (const [key, value] of Object.entries(config)) {
      // tfjs writes absent fields as null in saved configs; the layer configs treat them as absent.
      if (value === undefined || value === null || key === 'customObjects') continue;
      if (BASE_KEYS.has(key)) base[key] = value;
      else own[key] = value;
    }
    super(base as ConstructorParameters<typeof layers.Layer>[0]);
    const loadedId = own[STATE_ID_KEY];
    delete own[STATE_ID_KEY];
    delete own[STATE_FILE_KEY];
    // Without a seed, each layer draws its own (the layers' default seed 0 would give every layer
    // of a model the same initialization); the config records it, so a saved model rebuilds alike.
    if (own.seed === undefined) own.seed = randomInt(2 ** 31);
    this.layerConfig = own;
    if (typeof loadedId === 'string') {
      this.loadedState = takeLoadedState(loadedId);
      if (!this.loadedState) {
        throw new Error(
          `${this.getClassName()} '${this.name}': its config comes from a saved model whose state (expert tables, sparse optimizer) was not loaded with it; ` +
            `save and load such models through the file:// handler of @peer/feed-forward/tf-layers (fileSystem(path))`,
        );
      }
    }
    this.stateId = newStateId();
    registerLiveLayer(this.stateId, this);
  }

  /**
   * Builds the wrapped layer for model width `dim` (the config's `dim` when given, else the input's).
   * The config always has a `seed` (drawn when the user gave none).
   */
  protected abstract createLayer(config: ConfigDict & { dim: number }): L;

  /** The wrapped layer's dense variables, every one of `trainableVariables()` among them. */
  protected abstract namedVariables(layer: L): NamedVariable[];

  /** Row gradients accumulated by backward passes and not yet applied (0 for layers without tables). */
  protected abstract pendingSparseRows(layer: L): number;

  /** Whether the wrapped layer returns auxiliary losses in training (MoE), which model.fit must add. */
  protected usesAuxLoss(): boolean {
    return false;
  }

  /** The wrapped FeedForwardLayer (after build). */
  get layer(): L {
    if (!this.wrapped) throw new Error(`${this.getClassName()} '${this.name}': not built yet (apply it to an input, or add it to a model)`);
    return this.wrapped;
  }

  override build(inputShape: (number | null)[] | (number | null)[][]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as (number | null)[];
    const width = shape[shape.length - 1];
    if (shape.length < 2 || shape.length > 3 || typeof width !== 'number') {
      throw new Error(`${this.getClassName()} '${this.name}': input shape must be [batch, dim] or [batch, seq, dim] with a known dim, got [${shape.join(', ')}]`);
    }
    const given = this.layerConfig.dim;
    if (given !== undefined && given !== width) {
      throw new Error(`${this.getClassName()} '${this.name}': dim = ${String(given)} but the input's last axis is ${width}`);
    }
    this.layerConfig.dim = width;
    const layer = this.createLayer({ ...this.layerConfig, dim: width });
    try {
      const state = this.loadedState;
      if (state) {
        try {
          layer.loadStateEntries('', state.get);
        } catch (err) {
          throw new Error(`${state.source}: layer '${this.name}': ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
      }
      this.adopt(layer);
    } catch (err) {
      layer.dispose();
      throw err;
    }
    this.loadedState = undefined;
    this.wrapped = layer;
    if (this.usesAuxLoss()) this.addLoss(() => this.auxLoss());
    this.built = true;
  }

  private adopt(layer: L): void {
    const named = this.namedVariables(layer);
    const trainable = new Set(named.filter((n) => n.trainable).map((n) => n.variable));
    for (const v of layer.trainableVariables()) {
      if (!trainable.has(v)) throw new Error(`${this.getClassName()}: trainable variable '${v.name}' of the wrapped layer has no weight name`);
    }
    const adopted = named.map((n) => ({ trainable: n.trainable, variable: new AdoptedLayerVariable(n.variable, n.name, n.trainable) }));
    for (const a of adopted) (a.trainable ? this._trainableWeights : this.adoptedNonTrainable).push(a.variable);
  }

  override get nonTrainableWeights(): LayerVariable[] {
    return [...super.nonTrainableWeights, ...this.adoptedNonTrainable];
  }

  override computeOutputShape(inputShape: (number | null)[] | (number | null)[][]): (number | null)[] | (number | null)[][] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const layer = this.layer;
    if (!x || (x.rank !== 2 && x.rank !== 3) || x.shape[x.rank - 1] !== layer.dim) {
      throw new Error(`${this.getClassName()} '${this.name}': input must be [batch, ${layer.dim}] or [batch, seq, ${layer.dim}], got ${x ? `[${x.shape.join(', ')}]` : 'nothing'}`);
    }
    const training = kwargs.training === true;
    if (training && this.trainable && this.pendingSparseRows(layer) > 0) {
      throw new Error(
        `${this.getClassName()} '${this.name}': the expert-table gradients of the previous training step were never applied; ` +
          `pass callbacks: [sparseStepCallback(model)] to model.fit / fitDataset, or call sparseStep(model) after each trainOnBatch or optimizer step`,
      );
    }
    const [y, aux] = tf.tidy(() => {
      const x3 = (x.rank === 2 ? tf.expandDims(x, 1) : x) as tf.Tensor3D;
      const out = layer.apply(x3, { training });
      const y3 = x.rank === 2 ? tf.squeeze(out.y, [1]) : out.y;
      return out.auxLoss ? [y3, out.auxLoss] : [y3];
    });
    // model.fit adds the layer losses after the forward, outside the scopes that ran it (a model's
    // call is a tidy of its own): keep the aux loss until the next forward replaces it.
    this.lastAuxLoss?.dispose();
    this.lastAuxLoss = undefined;
    if (aux && training) this.lastAuxLoss = tf.keep(aux as tf.Scalar);
    else aux?.dispose();
    return y!;
  }

  /** The auxiliary loss of the last training forward (MoE load balancing), or 0. */
  private auxLoss(): tf.Scalar {
    return this.lastAuxLoss ?? tf.scalar(0);
  }

  /** Every piece of the wrapped layer's state, unprefixed (what the file-system handler saves). */
  stateEntries(): NamedArray[] {
    return this.layer.stateEntries('');
  }

  /** Restores what `stateEntries` produced. */
  loadStateEntries(get: StateEntryGetter): void {
    this.layer.loadStateEntries('', get);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...(this.layerConfig as tf.serialization.ConfigDict), [STATE_ID_KEY]: this.stateId };
  }

  override dispose(): ReturnType<layers.Layer['dispose']> {
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) {
      this.lastAuxLoss?.dispose();
      this.lastAuxLoss = undefined;
      this.wrapped?.dispose();
      unregisterLiveLayer(this.stateId);
    }
    return result;
  }
}
