// The token splits a run reads, from @peer/data's cache (tokenized once, then memory-mapped reads).
// Data problems (a missing or empty path, a corpus too small for one batch) are the user's to fix:
// they become one-line UsageErrors (exit 2).
import { resolve } from 'node:path';
import {
  createTokenizer,
  DataError,
  loadCorpus,
  prepareTokens,
  type Corpus,
  type CorpusOptions,
  type SplitName,
  type TokenFile,
  type Tokenizer,
  type TokenizerSpec,
} from '@peer/data';
import { UsageError } from '../errors.js';
import type { TrainConfig } from '../config/schema.js';

/** A DataError as a UsageError: prefixed with `what` (e.g. `data sotu`), or just `data` when it names its file itself. */
export function asUsageError(err: unknown, what: string): unknown {
  if (!(err instanceof DataError)) return err;
  return new UsageError(err.file !== undefined ? `data: ${err.message}` : `${what}: ${err.message}`);
}

/** The options of `loadCorpus` that a data config sets. */
export function corpusOptions(data: Pick<TrainConfig['data'], 'textField'>): CorpusOptions {
  return data.textField === undefined ? {} : { textField: data.textField };
}

/** The corpus behind `spec` (a built-in name, a path or a glob), checked to exist and not be empty. */
export async function openCorpus(spec: string, options: CorpusOptions = {}): Promise<Corpus> {
  try {
    return await loadCorpus(spec, options);
  } catch (err) {
    throw asUsageError(err, `data ${spec}`);
  }
}

export interface OpenedSplit {
  tokenizer: Tokenizer;
  file: TokenFile;
}

/**
 * One split of `data.corpus` (or `corpus` when given), tokenized with `data.tokenizer`.
 * `log` receives one line about the cache (hit or built).
 */
export async function openSplit(
  data: TrainConfig['data'],
  split: SplitName,
  options: { corpus?: Corpus | string; log?: (line: string) => void } = {},
): Promise<OpenedSplit> {
  const corpus = options.corpus ?? data.corpus;
  const label = typeof corpus === 'string' ? corpus : corpus.name;
  try {
    const tokenizer = createTokenizer(data.tokenizer as TokenizerSpec);
    let lastPercent = -25;
    const file = await prepareTokens({
      corpus,
      corpusOptions: corpusOptions(data),
      tokenizer,
      split,
      cacheDir: resolve(data.cacheDir),
      seed: data.splitSeed,
      fractions: data.fractions,
      onProgress: (p) => {
        const percent = p.totalBytes > 0 ? Math.floor((100 * p.bytes) / p.totalBytes) : 100;
        if (percent >= lastPercent + 25) {
          lastPercent = percent;
          options.log?.(`tokenizing ${label} (${data.tokenizer}): ${percent}%`);
        }
      },
    });
    if (file.numTokens === 0) throw new UsageError(`data ${label}: the ${split} split is empty (data.fractions gives it no documents)`);
    options.log?.(
      `data: ${label} ${split} split, ${file.numTokens.toLocaleString('en-US')} ${data.tokenizer} tokens ` +
        `(${file.cache.hit ? 'cached' : `tokenized: ${file.cache.reason}`})`,
    );
    return { tokenizer, file };
  } catch (err) {
    throw asUsageError(err, `data ${label}`);
  }
}
