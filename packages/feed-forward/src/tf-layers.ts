export { AdoptedLayerVariable } from './adopted-layer-variable.js';
export { FeedForwardTfLayer, type NamedVariable, type TfLayerArgs } from './feed-forward-tf-layer.js';
export { SparseStepCallback, feedForwardTfLayers, sparseStep, sparseStepCallback, type SparseLrScale, type SparseStepOptions } from './sparse-step.js';
export { fileSystem, registerFileSystemRouter } from './file-system-io.js';
