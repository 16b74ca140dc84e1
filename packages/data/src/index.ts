export { DataError, type DataErrorDetails } from './errors.js';
export {
  createTokenizer,
  resolveTokenizer,
  TOKENIZER_NAMES,
  type Tokenizer,
  type TokenizerName,
  type TokenizerSpec,
} from './tokenizer.js';
export {
  corpusFileFormat,
  loadCorpus,
  toWellFormed,
  TEXT_EXTENSIONS,
  type Corpus,
  type CorpusDocument,
  type CorpusKind,
  type CorpusOptions,
  type FileFormat,
} from './corpus.js';
export { BUILTIN_CORPORA, type BuiltinCorpusName } from './builtin-corpora.js';
export {
  assignSplit,
  checkFractions,
  DEFAULT_FRACTIONS,
  documentUniform,
  SPLIT_NAMES,
  type SplitFractions,
  type SplitName,
} from './splits.js';
export {
  cacheBaseName,
  cachePaths,
  prepareTokens,
  TOKEN_FILE_FORMAT,
  TOKEN_FILE_VERSION,
  type PrepareProgress,
  type PrepareTokensOptions,
  type TokenFile,
  type TokenFileHeader,
} from './token-cache.js';
export {
  arrayTokenSource,
  BYTES_PER_TOKEN,
  dtypeForVocab,
  TokenFileReader,
  type TokenArray,
  type TokenDtype,
  type TokenSource,
} from './token-source.js';
export { type TokenInput } from './token-input.js';
export { Batcher, type Batch, type BatcherOptions, type BatcherState } from './batcher.js';
export {
  bitsPerByte,
  countTokenBytes,
  EvalBatches,
  type EvalBatch,
  type EvalBatchesOptions,
} from './eval-batches.js';
