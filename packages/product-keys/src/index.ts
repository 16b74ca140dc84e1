export { ProductKeys, type ProductKeysConfig, type SubKeyTables } from './product-keys.js';
export { DEFAULT_MAX_CHUNK_ELEMENTS, retrieve, type Retrieval, type RetrieveOptions } from './retrieve.js';
export { MAX_SQRT_KEYS } from './checks.js';
export {
  QUERY_NORM_KINDS,
  QueryNorm,
  type QueryNormKind,
  type QueryNormOptions,
  type QueryNormReductions,
} from './query-norm.js';
export { batchNormInference, batchNormTraining, updateRunningStats, type BatchNormResult } from './query-norm-ops.js';
