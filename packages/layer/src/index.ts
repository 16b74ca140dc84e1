export {
  EXPERT_ACTIVATIONS,
  EXPERT_OPTIMIZERS,
  PeerConfigError,
  PeerLayerConfigSchema,
  QUERY_NORMS,
  SCORE_FUNCTIONS,
  resolvePeerConfig,
  type ExpertActivation,
  type ExpertOptimizerConfig,
  type PeerLayerConfig,
  type QueryNorm as QueryNormKind,
  type ResolvedPeerConfig,
  type ScoreFunction,
} from './config.js';
export { peerActiveParams, peerFlops, peerParams, type PeerFlops, type PeerParams } from './costs.js';
export { expertMixture, type MixtureOptions, type MixtureTables, type RowGradientSink } from './expert-mixture.js';
export { deviceExpertMixture } from './device-expert-mixture.js';
export { PeerLayer, type PeerRouting } from './peer-layer.js';
export { QueryNorm, type QueryNormOptions } from '@peer/product-keys';
export {
  featuresFromPytorch,
  featuresToPytorch,
  pytorchToInternalFeature,
  queryWeightFromPytorch,
  queryWeightToPytorch,
} from './query-layout.js';
export {
  DOWN_NAME,
  PYTORCH_NAMES,
  UP_NAME,
  exportPeerPytorch,
  loadPeerPytorchInto,
  peerConfigFromPytorch,
  type EntryGetter,
} from './pytorch-layout.js';
export { importPeerPytorch, loadPeerPytorch, savePeerPytorch } from './pytorch-files.js';
export { DenseRowGradient, parseLayerOverrides, runPeerOnFiles, type PeerOnFilesOptions, type PeerOnFilesResult } from './peer-on-files.js';
export { benchLayerStep, type LayerStepBenchOptions, type LayerStepBenchResult } from './bench-layer-step.js';
