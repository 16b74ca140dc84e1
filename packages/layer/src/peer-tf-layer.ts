// The PEER layer as a tf.layers layer: `peer({ numExperts, ... })` in tf.sequential or the
// functional API, trained by model.fit with `callbacks: [sparseStepCallback(model)]`, saved and
// loaded with its expert tables through `file://` (see @peer/feed-forward/tf-layers).
//
// Axes: B batch, S sequence, D model width.
import * as tf from '@tensorflow/tfjs-core';
import { FeedForwardTfLayer, type NamedVariable, type TfLayerArgs } from '@peer/feed-forward/tf-layers';
import { resolvePeerConfig, type PeerLayerConfig } from './config.js';
import { PeerLayer } from './peer-layer.js';

/** `PeerLayerConfig` with `dim` optional (default: the input's last axis) and tf.layers' base arguments. */
export type PeerTfLayerConfig = Omit<PeerLayerConfig, 'dim'> & { dim?: number } & TfLayerArgs;

export class PeerTfLayer extends FeedForwardTfLayer<PeerLayer> {
  /** The class name model.json records (tfjs serialization). */
  static readonly className = 'Peer';

  constructor(config: PeerTfLayerConfig) {
    super(config);
    // A bad config fails here, not when the layer is first applied.
    const { dim } = this.layerConfig;
    if (dim !== undefined) resolvePeerConfig(this.layerConfig);
  }

  protected createLayer(config: Record<string, unknown> & { dim: number }): PeerLayer {
    return new PeerLayer(config as PeerLayerConfig);
  }

  protected namedVariables(layer: PeerLayer): NamedVariable[] {
    const norm = layer.queryNorm;
    const out: NamedVariable[] = [{ name: 'query_weight', variable: layer.queryWeight, trainable: true }];
    const optional: [string, tf.Variable | undefined, boolean][] = [
      ['query_norm_gamma', norm.weight, true],
      ['query_norm_beta', norm.bias, true],
      ['query_norm_running_mean', norm.runningMean, false],
      ['query_norm_running_var', norm.runningVar, false],
    ];
    for (const [name, variable, trainable] of optional) if (variable) out.push({ name, variable, trainable });
    out.push({ name: 'sub_keys1', variable: layer.keys.subKeys1, trainable: true }, { name: 'sub_keys2', variable: layer.keys.subKeys2, trainable: true });
    return out;
  }

  protected pendingSparseRows(layer: PeerLayer): number {
    return layer.downGrad.size + layer.upGrad.size;
  }
}

tf.serialization.registerClass(PeerTfLayer);

/** A PEER layer for tf.layers models: `tf.sequential({ layers: [peer({ numExperts: 1024, inputShape: [64] })] })`. */
export function peer(config: PeerTfLayerConfig): PeerTfLayer {
  return new PeerTfLayer(config);
}
