// The sparse half of a training step for models with wrapped feed-forward layers: after each batch's
// backward pass, apply (then clear) the row gradients their tables accumulated.
import { Callback, type LayersModel } from '@tensorflow/tfjs-layers';
import type { layers } from '@tensorflow/tfjs-layers';
import { FeedForwardTfLayer } from './feed-forward-tf-layer.js';

/** A learning-rate factor for the sparse optimizers: constant, or per step (0, 1, ... batches since the callback was made). */
export type SparseLrScale = number | ((step: number) => number);

export interface SparseStepOptions {
  /** Multiplies each layer's own sparse learning rate (default 1). */
  lrScale?: SparseLrScale;
}

/** The wrapped feed-forward layers of `model`, nested models included, in layer order. */
export function feedForwardTfLayers(model: layers.Layer): FeedForwardTfLayer[] {
  const out: FeedForwardTfLayer[] = [];
  const visit = (layer: layers.Layer): void => {
    if (layer instanceof FeedForwardTfLayer) out.push(layer);
    const inner = (layer as { layers?: unknown }).layers;
    if (Array.isArray(inner)) for (const l of inner as layers.Layer[]) visit(l);
  };
  visit(model);
  return out;
}

/**
 * Applies every wrapped layer's sparse optimizer to the rows touched since the last call (learning
 * rate times `lrScale`), then clears the row gradients; a layer with `trainable = false` only clears them.
 */
export function sparseStep(model: layers.Layer, lrScale = 1): void {
  if (!(lrScale >= 0) || !Number.isFinite(lrScale)) throw new Error(`sparseStep: lrScale must be a finite number >= 0, got ${lrScale}`);
  for (const layer of feedForwardTfLayers(model)) {
    if (!layer.built) continue;
    if (layer.trainable) layer.layer.sparseStep(lrScale);
    else layer.layer.zeroSparseGrads();
  }
}

/** Runs `sparseStep(model)` after every batch of model.fit / fitDataset. */
export class SparseStepCallback extends Callback {
  private step = 0;

  constructor(
    private readonly target: LayersModel,
    private readonly options: SparseStepOptions = {},
  ) {
    super();
  }

  override async onBatchEnd(): Promise<void> {
    const scale = this.options.lrScale ?? 1;
    sparseStep(this.target, typeof scale === 'number' ? scale : scale(this.step));
    this.step++;
  }
}

/** `callbacks: [sparseStepCallback(model)]` in model.fit / fitDataset trains the expert tables. */
export function sparseStepCallback(model: LayersModel, options: SparseStepOptions = {}): SparseStepCallback {
  return new SparseStepCallback(model, options);
}
