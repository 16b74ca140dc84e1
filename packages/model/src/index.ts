export {
  FeedForwardConfigSchema,
  ModelConfigError,
  ModelConfigSchema,
  blockKinds,
  parseModelConfig,
  type ModelConfig,
  type ModelConfigInput,
} from './config.js';
export {
  createFeedForward,
  feedForwardFactory,
  registerFeedForward,
  registeredFeedForwardKinds,
  unregisterFeedForward,
  type FeedForwardFactory,
  type FeedForwardFactoryArgs,
} from './registry.js';
export {
  TransformerLM,
  checkTokenIds,
  type ForwardMode,
  type GenerateOptions,
  type LossOutput,
  type NamedVariable,
  type TransformerOptions,
} from './transformer.js';
export { attentionFlopsPerToken, modelFlopsPerToken, modelParamCounts, type FeedForwardCosts, type ParamCounts } from './accounting.js';
export { causalMask, causalSelfAttention, type AttentionContext, type AttentionMode } from './causal-attention.js';
export { crossEntropy } from './cross-entropy.js';
export { columnSums, linear } from '@peer/backend';
export { layerNorm, rmsNorm, type NormKind } from './norm.js';
export { ropeTables, rotateHalfMatrix, type RopeFactors } from './rope.js';
export { argmax, sampleToken, samplingProbabilities, type SamplingOptions } from './sampling.js';
