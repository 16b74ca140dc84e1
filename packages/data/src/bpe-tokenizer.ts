// GPT-2 / GPT-3.5/4 / GPT-4o byte-pair encodings, using the vocabularies shipped in `gpt-tokenizer`.
// Encoding goes through gpt-tokenizer; decoding does not: its decode keeps one streaming TextDecoder
// for the whole process, so a token sequence ending inside a multi-byte character leaks bytes into
// the next call. Here every id maps to its bytes (from the rank table), and one fresh decode runs
// over the concatenation.
import { createRequire } from 'node:module';
import type { Tokenizer } from './tokenizer.js';
import { checkTokenId, idsToArrayLike } from './token-ids.js';

export type BpeTokenizerName = 'gpt2' | 'p50k' | 'cl100k' | 'o200k';

const ENCODING_OF: Record<BpeTokenizerName, string> = {
  gpt2: 'r50k_base',
  p50k: 'p50k_base',
  cl100k: 'cl100k_base',
  o200k: 'o200k_base',
};

// The parts of gpt-tokenizer's per-encoding module this file uses.
interface EncodeOptions {
  allowedSpecial?: Set<string> | 'all';
  disallowedSpecial?: Set<string> | 'all';
}
interface EncodingModule {
  encode(text: string, options?: EncodeOptions): number[];
  [name: string]: unknown;
}
interface RanksModule {
  // Index = id; a string when the token's bytes are valid UTF-8, else the raw bytes.
  default: (string | number[] | undefined)[];
}

const SPECIAL_TOKEN_EXPORTS = [
  'EndOfText',
  'FimPrefix',
  'FimMiddle',
  'FimSuffix',
  'ImStart',
  'ImEnd',
  'ImSep',
  'EndOfPrompt',
];

// Synchronous loading keeps createTokenizer synchronous; the CJS build of each encoding loads fast
// enough for that (README, Measured).
const requireFromHere = createRequire(import.meta.url);
const utf8Encoder = new TextEncoder();
const instances = new Map<BpeTokenizerName, Tokenizer>();
// Plain-text encoding: special-token strings in corpus text are ordinary text.
const PLAIN_TEXT: EncodeOptions = { disallowedSpecial: new Set() };

export function createBpeTokenizer(name: BpeTokenizerName): Tokenizer {
  const cached = instances.get(name);
  if (cached) return cached;
  const encodingName = ENCODING_OF[name];
  const encoding = requireFromHere(`gpt-tokenizer/encoding/${encodingName}`) as EncodingModule;
  const ranks = (requireFromHere(`gpt-tokenizer/bpeRanks/${encodingName}`) as RanksModule).default;

  const specials = new Map<number, string>();
  for (const exportName of SPECIAL_TOKEN_EXPORTS) {
    const text = encoding[exportName];
    if (typeof text !== 'string') continue;
    const ids = encoding.encode(text, { allowedSpecial: 'all' });
    if (ids.length === 1 && ids[0]! >= ranks.length) specials.set(ids[0]!, text);
  }
  const vocabSize = Math.max(ranks.length, ...[...specials.keys()].map((id) => id + 1));
  const endOfText = [...specials].find(([, text]) => text === '<|endoftext|>')?.[0] ?? null;

  // Built on first decode: 100k small arrays are not worth paying for when only encoding.
  let bytesOf: Uint8Array[] | undefined;
  const tokenBytes = (): Uint8Array[] => {
    if (bytesOf) return bytesOf;
    const empty = new Uint8Array(0);
    bytesOf = new Array<Uint8Array>(vocabSize);
    for (let id = 0; id < vocabSize; id++) {
      const rank = ranks[id];
      const special = specials.get(id);
      bytesOf[id] =
        typeof rank === 'string'
          ? utf8Encoder.encode(rank)
          : Array.isArray(rank)
            ? Uint8Array.from(rank)
            : special !== undefined
              ? utf8Encoder.encode(special)
              : empty; // unused id (a hole in the rank table)
    }
    return bytesOf;
  };

  const tokenizer: Tokenizer = {
    name,
    vocabSize,
    endOfText,
    encode(text: string): number[] {
      return encoding.encode(text, PLAIN_TEXT);
    },
    decode(ids: ArrayLike<number> | Iterable<number>): string {
      const arr = idsToArrayLike(ids);
      const table = tokenBytes();
      let total = 0;
      for (let i = 0; i < arr.length; i++) {
        const id = arr[i]!;
        const bytes = table[id];
        if (bytes === undefined || !Number.isInteger(id)) checkTokenId(id, i, name, vocabSize);
        total += bytes!.length;
      }
      const out = new Uint8Array(total);
      let at = 0;
      for (let i = 0; i < arr.length; i++) {
        const bytes = table[arr[i]!]!;
        out.set(bytes, at);
        at += bytes.length;
      }
      return new TextDecoder('utf-8', { ignoreBOM: true }).decode(out);
    },
    tokenByteLengths(): Uint16Array {
      const table = tokenBytes();
      const lengths = new Uint16Array(vocabSize);
      // Special ids never come from corpus text (encode treats their strings as text): 0 bytes.
      for (let id = 0; id < vocabSize; id++) lengths[id] = specials.has(id) ? 0 : table[id]!.length;
      return lengths;
    },
  };
  instances.set(name, tokenizer);
  return tokenizer;
}
