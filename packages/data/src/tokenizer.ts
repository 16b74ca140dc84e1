// The tokenizer contract shared by the byte-level and BPE tokenizers, and the factory that picks one.
import { createByteTokenizer } from './byte-tokenizer.js';
import { createBpeTokenizer, type BpeTokenizerName } from './bpe-tokenizer.js';
import { DataError } from './errors.js';

/** Canonical tokenizer names, as written into token-file headers. */
export type TokenizerName = 'byte' | BpeTokenizerName;

/** Names `createTokenizer` accepts: the canonical ones plus `r50k` (the GPT-2 vocabulary's tiktoken name). */
export type TokenizerSpec = TokenizerName | 'r50k';

export const TOKENIZER_NAMES: readonly TokenizerName[] = ['byte', 'gpt2', 'p50k', 'cl100k', 'o200k'];

export interface Tokenizer {
  readonly name: TokenizerName;
  /** Every id is in [0, vocabSize): the number of rows an embedding table needs. */
  readonly vocabSize: number;
  /** The id appended after every document in a token file, or null when the vocabulary has none (byte). */
  readonly endOfText: number | null;
  /**
   * Text to ids. Special-token strings such as `<|endoftext|>` inside the text are encoded as plain
   * text, never as the special id, so that corpus text cannot inject control tokens.
   */
  encode(text: string): number[] | Uint32Array;
  /**
   * Ids to text. Never throws for ids in [0, vocabSize): byte sequences that are not valid UTF-8
   * (a cut multi-byte character) become U+FFFD. Throws a RangeError for an id outside the vocabulary.
   */
  decode(ids: ArrayLike<number> | Iterable<number>): string;
  /**
   * For each id, how many UTF-8 bytes of corpus text it stands for (0 for special and unused ids).
   * Summed over a token file it gives that file's byte count: the denominator of bits-per-byte.
   */
  tokenByteLengths(): Uint16Array;
}

/**
 * A tokenizer by name: `byte` (256 ids, one per UTF-8 byte), `gpt2` (= `r50k`, 50 257 ids), `p50k`,
 * `cl100k` (GPT-3.5/4) or `o200k` (GPT-4o). BPE vocabularies ship inside `gpt-tokenizer`: nothing is
 * downloaded. Instances are cached per name.
 */
export function createTokenizer(spec: TokenizerSpec): Tokenizer {
  const name = spec === 'r50k' ? 'gpt2' : spec;
  if (name === 'byte') return createByteTokenizer();
  if (name === 'gpt2' || name === 'p50k' || name === 'cl100k' || name === 'o200k') return createBpeTokenizer(name);
  throw new DataError(
    `unknown tokenizer ${JSON.stringify(spec)}: expected one of ${[...TOKENIZER_NAMES, 'r50k'].join(', ')}`,
  );
}

/** A tokenizer object passes through; a name goes to `createTokenizer`. */
export function resolveTokenizer(tokenizer: Tokenizer | TokenizerSpec): Tokenizer {
  return typeof tokenizer === 'string' ? createTokenizer(tokenizer) : tokenizer;
}
