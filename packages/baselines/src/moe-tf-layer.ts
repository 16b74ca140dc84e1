// The two MoE layers as tf.layers layers: `moe({ experts, ... })` (token choice) and
// `moeExpertChoice({ experts, ... })`. All their parameters are dense tfjs variables, so model.fit
// trains them without a sparse step; the load-balancing and router z-losses of a training forward
// are added to model.fit's loss (tf.layers' layer losses).
import * as tf from '@tensorflow/tfjs-core';
import { FeedForwardTfLayer, type NamedVariable, type TfLayerArgs } from '@peer/feed-forward/tf-layers';
import { parseMoeExpertChoiceConfig, parseMoeTokenChoiceConfig, type MoeExpertChoiceOptions, type MoeTokenChoiceOptions } from './moe-config.js';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { MoeTokenChoice } from './moe-token-choice.js';

export type MoeTfLayerConfig = Omit<MoeTokenChoiceOptions, 'dim'> & { dim?: number } & TfLayerArgs;
export type MoeExpertChoiceTfLayerConfig = Omit<MoeExpertChoiceOptions, 'dim'> & { dim?: number } & TfLayerArgs;

type MoeLayer = MoeTokenChoice | MoeExpertChoice;

/** router, experts.<e>.w1, experts.<e>.b1, experts.<e>.w2, experts.<e>.b2 (in the order of `trainableVariables()`). */
function moeVariables(layer: MoeLayer): NamedVariable[] {
  const { router, experts } = layer.tensors();
  const group = (name: string, vars: readonly tf.Tensor[] | null): NamedVariable[] =>
    (vars ?? []).map((v, e) => ({ name: `experts.${e}.${name}`, variable: v as tf.Variable, trainable: true }));
  return [
    { name: 'router', variable: router as tf.Variable, trainable: true },
    ...group('w1', experts.w1),
    ...group('b1', experts.b1),
    ...group('w2', experts.w2),
    ...group('b2', experts.b2),
  ];
}

export class MoeTfLayer extends FeedForwardTfLayer<MoeTokenChoice> {
  /** The class name model.json records (tfjs serialization). */
  static readonly className = 'MoeTokenChoice';

  constructor(config: MoeTfLayerConfig) {
    super(config);
    if (this.layerConfig.dim !== undefined) parseMoeTokenChoiceConfig(this.layerConfig);
  }

  protected createLayer(config: Record<string, unknown> & { dim: number }): MoeTokenChoice {
    return new MoeTokenChoice(config as MoeTokenChoiceOptions);
  }

  protected namedVariables(layer: MoeTokenChoice): NamedVariable[] {
    return moeVariables(layer);
  }

  protected pendingSparseRows(): number {
    return 0;
  }

  protected override usesAuxLoss(): boolean {
    return true;
  }
}

export class MoeExpertChoiceTfLayer extends FeedForwardTfLayer<MoeExpertChoice> {
  /** The class name model.json records (tfjs serialization). */
  static readonly className = 'MoeExpertChoice';

  constructor(config: MoeExpertChoiceTfLayerConfig) {
    super(config);
    if (this.layerConfig.dim !== undefined) parseMoeExpertChoiceConfig(this.layerConfig);
  }

  protected createLayer(config: Record<string, unknown> & { dim: number }): MoeExpertChoice {
    return new MoeExpertChoice(config as MoeExpertChoiceOptions);
  }

  protected namedVariables(layer: MoeExpertChoice): NamedVariable[] {
    return moeVariables(layer);
  }

  protected pendingSparseRows(): number {
    return 0;
  }

  protected override usesAuxLoss(): boolean {
    return true;
  }
}

tf.serialization.registerClass(MoeTfLayer);
tf.serialization.registerClass(MoeExpertChoiceTfLayer);

/** A token-choice MoE (Switch / GShard) for tf.layers models. */
export function moe(config: MoeTfLayerConfig): MoeTfLayer {
  return new MoeTfLayer(config);
}

/** An expert-choice MoE for tf.layers models. */
export function moeExpertChoice(config: MoeExpertChoiceTfLayerConfig): MoeExpertChoiceTfLayer {
  return new MoeExpertChoiceTfLayer(config);
}
