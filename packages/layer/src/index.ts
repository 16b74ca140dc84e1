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
export { expertMixture, type ExpertRows, type MixtureOptions, type MixtureTables, type RowGradientSink } from './expert-mixture.js';
export { PeerLayer, type PeerRouting } from './peer-layer.js';
export { QueryNorm, type QueryNormOptions } from './query-norm.js';
export {
  featuresFromPytorch,
  featuresToPytorch,
  pytorchToInternalFeature,
  queryWeightFromPytorch,
  queryWeightToPytorch,
} from './query-layout.js';
