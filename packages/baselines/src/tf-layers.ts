export { PkmTfLayer, pkm, type PkmTfLayerConfig } from './pkm-tf-layer.js';
export { MoeExpertChoiceTfLayer, MoeTfLayer, moe, moeExpertChoice, type MoeExpertChoiceTfLayerConfig, type MoeTfLayerConfig } from './moe-tf-layer.js';
export {
  FeedForwardTfLayer,
  SparseStepCallback,
  feedForwardTfLayers,
  fileSystem,
  registerFileSystemRouter,
  sparseStep,
  sparseStepCallback,
  type SparseLrScale,
  type SparseStepOptions,
  type TfLayerArgs,
} from '@peer/feed-forward/tf-layers';
