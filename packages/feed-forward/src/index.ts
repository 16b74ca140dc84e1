export {
  FEED_FORWARD_KINDS,
  type ApplyMode,
  type FeedForwardKind,
  type FeedForwardLayer,
  type FeedForwardOutput,
  type StateEntryGetter,
  type UsageOptions,
  type UsageReport,
} from './feed-forward-layer.js';
export { ConfigError, valueAtPath } from './config-error.js';
export { timeLayerStep, type BenchableLayer, type LayerStepTiming, type TimeLayerStepOptions } from './time-layer-step.js';
