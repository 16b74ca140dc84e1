export { DenseFfw, denseFfwForward, type DenseFfwParams } from './dense-ffw.js';
export {
  DENSE_FFW_ACTIVATIONS,
  DenseFfwConfigError,
  DenseFfwConfigSchema,
  parseDenseFfwConfig,
  type DenseFfwActivation,
  type DenseFfwConfig,
  type DenseFfwConfigInput,
} from './dense-ffw-config.js';
export { MoeTokenChoice, moeTokenChoiceDeviceForward, moeTokenChoiceForward, type MoeDeviceResult, type MoeTensors, type MoeTokenChoiceResult } from './moe-token-choice.js';
export { MoeExpertChoice, moeExpertChoiceDeviceForward, moeExpertChoiceForward, type MoeExpertChoiceResult } from './moe-expert-choice.js';
export {
  moeExpertChoiceConfigSchema,
  moeTokenChoiceConfigSchema,
  parseMoeExpertChoiceConfig,
  parseMoeTokenChoiceConfig,
  type MoeExpertChoiceConfig,
  type MoeExpertChoiceOptions,
  type MoeTokenChoiceConfig,
  type MoeTokenChoiceOptions,
} from './moe-config.js';
export {
  expertChoiceCapacity,
  expertChoiceDispatch,
  tokenChoiceCapacity,
  tokenChoiceRouting,
  type MoeDispatch,
  type TokenChoiceRouting,
} from './moe-routing.js';
export { expertMixture, type ExpertParams } from './moe-expert-mixture.js';
export type { MoeRoutingStats } from './moe-stats.js';
export { ACTIVATIONS, activate, activationDerivative, activationForward, activationWithCache, type Activation, type ActivationResult } from '@peer/backend';
export { LayerConfigError, parseLayerConfig } from './layer-config.js';
export { UsageAccumulator } from './usage-report.js';
export { ProductKeyMemory, pkmForward, scoresForSlots, type PkmForwardOptions, type PkmForwardResult, type PkmQueryNormTensors, type PkmTensors } from './pkm.js';
export { PKM_QUERY_NORMS, VALUE_OPTIMIZERS, parsePkmConfig, pkmConfigSchema, valueOptimizerSchema, type PkmConfig, type PkmOptions } from './pkm-config.js';
export { valueMixture, type RowGradientSink } from './pkm-value-mixture.js';
export { batchNormInference, batchNormTraining, updateRunningStats, type BatchNormResult } from '@peer/product-keys';
export { loadLayerState, saveLayerState, type StatefulLayer } from './layer-state-file.js';
export {
  BASELINE_KINDS,
  baselineBenchConfig,
  benchBaselineLayer,
  createBaselineLayer,
  type BaselineBenchOptions,
  type BaselineBenchResult,
  type BaselineKind,
} from './bench-layer-step.js';
