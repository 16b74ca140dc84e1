// The product-key memory as a tf.layers layer: `pkm({ memories, ... })`, trained by model.fit with
// `callbacks: [sparseStepCallback(model)]` (the value table's sparse update), saved and loaded with
// its value table through `file://` (see @peer/feed-forward/tf-layers).
import * as tf from '@tensorflow/tfjs-core';
import { FeedForwardTfLayer, type NamedVariable, type TfLayerArgs } from '@peer/feed-forward/tf-layers';
import { parsePkmConfig, type PkmOptions } from './pkm-config.js';
import { ProductKeyMemory } from './pkm.js';

/** `PkmOptions` with `dim` optional (default: the input's last axis) and tf.layers' base arguments. */
export type PkmTfLayerConfig = Omit<PkmOptions, 'dim'> & { dim?: number } & TfLayerArgs;

export class PkmTfLayer extends FeedForwardTfLayer<ProductKeyMemory> {
  /** The class name model.json records (tfjs serialization). */
  static readonly className = 'ProductKeyMemory';

  constructor(config: PkmTfLayerConfig) {
    super(config);
    // A bad config fails here, not when the layer is first applied.
    if (this.layerConfig.dim !== undefined) parsePkmConfig(this.layerConfig);
  }

  protected createLayer(config: Record<string, unknown> & { dim: number }): ProductKeyMemory {
    return new ProductKeyMemory(config as PkmOptions);
  }

  protected namedVariables(layer: ProductKeyMemory): NamedVariable[] {
    const n = layer.queryNorm;
    return [
      { name: 'query_weight', variable: layer.queryWeight, trainable: true },
      ...(n
        ? [
            { name: 'query_norm_gamma', variable: n.weight, trainable: true },
            { name: 'query_norm_beta', variable: n.bias, trainable: true },
            { name: 'query_norm_running_mean', variable: n.runningMean, trainable: false },
            { name: 'query_norm_running_var', variable: n.runningVar, trainable: false },
          ]
        : []),
      { name: 'sub_keys1', variable: layer.keys.subKeys1, trainable: true },
      { name: 'sub_keys2', variable: layer.keys.subKeys2, trainable: true },
    ];
  }

  protected pendingSparseRows(layer: ProductKeyMemory): number {
    return layer.valueGrad.size;
  }
}

tf.serialization.registerClass(PkmTfLayer);

/** A product-key memory for tf.layers models. */
export function pkm(config: PkmTfLayerConfig): PkmTfLayer {
  return new PkmTfLayer(config);
}
