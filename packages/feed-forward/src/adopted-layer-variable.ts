// A tf.layers LayerVariable that reads and writes a tf.Variable owned by a feed-forward layer.
//
// Why: model.fit's optimizer differentiates with respect to `LayerVariable.read()`, while the
// feed-forward layers (PEER, PKM, MoE) create their own tfjs variables and compute with them. A
// LayerVariable always creates a fresh variable, so this subclass points it at the layer's one
// instead: the optimizer, getWeights/setWeights and model.save then see the very variable the
// layer's forward reads. tfjs-layers 4.22 (the last release) keeps it in the protected `val`.
import type * as tf from '@tensorflow/tfjs-core';
import { LayerVariable } from '@tensorflow/tfjs-layers';

export class AdoptedLayerVariable extends LayerVariable {
  /**
   * `name` is scoped by the enclosing layer's name when constructed inside its `build`, which makes
   * the saved weight names stable (`<layer name>/<name>`) across processes.
   */
  constructor(variable: tf.Variable, name: string, trainable: boolean) {
    // The base constructor registers a variable under the unique scoped name; it shares the
    // adopted variable's data (no copy) and is released at once.
    super(variable, variable.dtype, name, trainable);
    this.val.dispose();
    (this as unknown as { val: tf.Variable }).val = variable;
    variable.trainable = trainable;
  }

  /** The owning feed-forward layer disposes the variable, once. */
  override dispose(): void {}
}
