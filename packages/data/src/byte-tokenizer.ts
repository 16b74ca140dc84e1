// Byte-level tokenizer: one id per UTF-8 byte (256 ids). No merges, no vocabulary file, lossless for
// every well-formed string, and the cheapest possible encode: the default for CPU-sized runs.
import type { Tokenizer } from './tokenizer.js';
import { checkTokenId, idsToArrayLike } from './token-ids.js';

const utf8Encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF in the output; the default would drop it and break round trips.
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

let instance: Tokenizer | undefined;

export function createByteTokenizer(): Tokenizer {
  instance ??= {
    name: 'byte',
    vocabSize: 256,
    endOfText: null,
    encode(text: string): Uint32Array {
      // A lone surrogate is not Unicode; TextEncoder writes U+FFFD (3 bytes) for it.
      return new Uint32Array(utf8Encoder.encode(text));
    },
    decode(ids: ArrayLike<number> | Iterable<number>): string {
      const arr = idsToArrayLike(ids);
      const bytes = new Uint8Array(arr.length);
      for (let i = 0; i < arr.length; i++) {
        const id = arr[i]!;
        if (!(id >= 0 && id < 256 && Number.isInteger(id))) checkTokenId(id, i, 'byte', 256);
        bytes[i] = id;
      }
      return utf8Decoder.decode(bytes);
    },
    tokenByteLengths(): Uint16Array {
      return new Uint16Array(256).fill(1);
    },
  };
  return instance;
}
