export {
  allocateNamedArray,
  DTYPE_BYTES,
  elementCount,
  isSafetensorsDtype,
  namedArrayBytes,
  validateNamedArray,
  type NamedArray,
  type NamedArrayData,
  type NamedArraySpec,
  type SafetensorsDtype,
} from './named-array.js';
export {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBFloat16,
  float32ToFloat16,
  fromBFloat16Bits,
  fromFloat16Bits,
  toBFloat16Bits,
  toFloat16Bits,
} from './half-float.js';
export type { ExpertTable, RowGradient, RowGradientSink, RowSelection, TablePlacement, TableSource, TableStorage } from './expert-table.js';
export { HostExpertTable, type ExpertTableOptions, type TableInit } from './host-expert-table.js';
export { DeviceExpertTable, type DeviceExpertTableOptions } from './device-expert-table.js';
export { DeviceRowGradient, type SummedRows } from './device-row-gradient.js';
export { DeviceSparseAdam, DeviceSparseOptimizer, DeviceSparseSgd } from './device-sparse-optimizer.js';
export {
  createExpertTable,
  createSparseOptimizer,
  type CreateExpertTableOptions,
  type SparseOptimizerConfig,
  type SparseTableOptimizer,
} from './table-factory.js';
export { fillNormalSeeded, fillUniformSeeded } from './seeded-fill.js';
export { RowSparseGrad, globalNorm, type RowSparseGradOptions } from './row-sparse-grad.js';
export { SparseOptimizer, type SparseOptimizerOptions, type SparseStepResult } from './sparse-optimizer.js';
export { SparseAdam, adamRows, type AdamState, type SparseAdamOptions } from './sparse-adam.js';
export { SparseSgd, type SgdState, type SparseSgdOptions } from './sparse-sgd.js';
export { UsageStats, type UsageOptions, type UsageReport, type UsageStatsOptions, type UsageStatsReport } from './usage-stats.js';
export { usageHistogram, type HistogramOptions, type UsageHistogram } from './usage-histogram.js';
export { StoreFileError } from './file-io.js';
export {
  deserializeSafetensors,
  MAX_HEADER_BYTES,
  parseSafetensorsHeader,
  planSafetensors,
  readSafetensors,
  SafetensorsReader,
  serializeSafetensors,
  writeSafetensors,
  type ParsedHeader,
  type SafetensorsEntry,
  type SafetensorsFile,
  type SafetensorsLayout,
  type SafetensorsMetadata,
  type WriteOptions,
  type WriteResult,
} from './safetensors.js';
export {
  CHECKPOINT_FORMAT,
  CHECKPOINT_FORMAT_VERSION,
  CheckpointError,
  DEFAULT_SHARD_BYTES,
  loadCheckpoint,
  MANIFEST_FILE,
  planShards,
  saveCheckpoint,
  type Checkpoint,
  type CheckpointManifest,
  type LoadOptions,
  type ManifestShard,
  type ManifestTensor,
  type SaveOptions,
  type SaveProgress,
  type SaveStage,
} from './checkpoint.js';
