export { PeerTfLayer, peer, type PeerTfLayerConfig } from './peer-tf-layer.js';
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
