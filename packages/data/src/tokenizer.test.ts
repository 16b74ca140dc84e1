import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toWellFormed } from './corpus.js';
import { DataError } from './errors.js';
import { createTokenizer, type TokenizerSpec } from './tokenizer.js';

const requireHere = createRequire(import.meta.url);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

// Any code point (astral included, no lone surrogates), and grapheme clusters (combining marks, emoji ZWJ).
const unicodeStrings = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  fc.string({ unit: 'grapheme-composite', maxLength: 50 }),
);
// Arbitrary UTF-16 code units: lone surrogates included.
const codeUnitStrings = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 100 });

describe('byte tokenizer', () => {
  const tok = createTokenizer('byte');

  it('has 256 ids, no end-of-text id, one byte per id', () => {
    expect(tok.name).toBe('byte');
    expect(tok.vocabSize).toBe(256);
    expect(tok.endOfText).toBeNull();
    expect([...tok.tokenByteLengths()]).toEqual(new Array(256).fill(1));
  });

  it('encodes to the UTF-8 bytes (reference: Buffer.from)', () => {
    fc.assert(
      fc.property(unicodeStrings, (s) => {
        expect([...tok.encode(s)]).toEqual([...Buffer.from(s, 'utf8')]);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips every well-formed string exactly', () => {
    fc.assert(fc.property(unicodeStrings, (s) => tok.decode(tok.encode(s)) === s), { numRuns: 500 });
    // A leading byte-order mark survives (TextDecoder drops it unless told not to).
    expect(tok.decode(tok.encode('\uFEFFabc'))).toBe('\uFEFFabc');
  });

  it('maps lone surrogates (not Unicode) to U+FFFD, like TextEncoder', () => {
    fc.assert(fc.property(codeUnitStrings, (s) => tok.decode(tok.encode(s)) === toWellFormed(s)), { numRuns: 300 });
    expect(tok.decode(tok.encode('a\uD800b'))).toBe('a\uFFFDb');
  });

  it('decodes any byte sequence without throwing (invalid UTF-8 -> U+FFFD)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 200 }), (ids) => {
        const reference = new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(ids));
        expect(tok.decode(ids)).toBe(reference);
      }),
      { numRuns: 300 },
    );
    expect(tok.decode([0xe2, 0x82])).toBe('\uFFFD');
  });

  it('rejects ids outside [0, 256) with the position and value', () => {
    expect(() => tok.decode([65, 256])).toThrow(/id 256 at position 1 is outside \[0, 256\)/);
    expect(() => tok.decode([-1])).toThrow(RangeError);
    expect(() => tok.decode([1.5])).toThrow(RangeError);
  });
});

describe.each<[TokenizerSpec, number, number | null]>([
  ['gpt2', 50257, 50256],
  ['cl100k', 100277, 100257],
])('%s tokenizer', (name, vocabSize, endOfText) => {
  const tok = createTokenizer(name);

  it('has the published vocabulary size and end-of-text id', () => {
    expect(tok.vocabSize).toBe(vocabSize);
    expect(tok.endOfText).toBe(endOfText);
  });

  it('round-trips every well-formed string exactly', () => {
    fc.assert(fc.property(unicodeStrings, (s) => tok.decode(tok.encode(s)) === s), { numRuns: 300 });
  });

  it('maps lone surrogates to U+FFFD', () => {
    fc.assert(fc.property(codeUnitStrings, (s) => tok.decode(tok.encode(s)) === toWellFormed(s)), { numRuns: 200 });
  });

  it('encodes special-token strings as plain text', () => {
    const ids = [...tok.encode('a <|endoftext|> b')];
    expect(ids).not.toContain(endOfText);
    expect(tok.decode(ids)).toBe('a <|endoftext|> b');
    // Decoding the special id itself gives its literal text.
    expect(tok.decode([endOfText!])).toBe('<|endoftext|>');
  });

  it('token byte lengths sum to the UTF-8 length of the text', () => {
    const lengths = tok.tokenByteLengths();
    expect(lengths.length).toBe(vocabSize);
    expect(lengths[endOfText!]).toBe(0);
    fc.assert(
      fc.property(unicodeStrings, (s) => {
        let sum = 0;
        for (const id of tok.encode(s)) sum += lengths[id]!;
        expect(sum).toBe(utf8(s).length);
      }),
      { numRuns: 200 },
    );
  });

  it('decodes any id sequence without throwing: the UTF-8 decoding of the concatenated token bytes', () => {
    // Reference token bytes straight from the shipped rank table (string = UTF-8 text, array = raw
    // bytes), special ids as their literal text (published ids), unused ids as nothing.
    const ranks = requireHere(`gpt-tokenizer/bpeRanks/${name === 'gpt2' ? 'r50k_base' : 'cl100k_base'}`).default as (
      | string
      | number[]
    )[];
    const specials: Record<number, string> =
      name === 'gpt2'
        ? { 50256: '<|endoftext|>' }
        : {
            100257: '<|endoftext|>',
            100258: '<|fim_prefix|>',
            100259: '<|fim_middle|>',
            100260: '<|fim_suffix|>',
            100264: '<|im_start|>',
            100265: '<|im_end|>',
            100266: '<|im_sep|>',
            100276: '<|endofprompt|>',
          };
    const bytesOf = (id: number): number[] => {
      const rank = ranks[id];
      if (typeof rank === 'string') return [...utf8(rank)];
      if (Array.isArray(rank)) return rank;
      return specials[id] === undefined ? [] : [...utf8(specials[id])];
    };
    const anyId = fc.oneof(fc.integer({ min: 0, max: vocabSize - 1 }), fc.integer({ min: ranks.length - 2, max: vocabSize - 1 }));
    fc.assert(
      fc.property(fc.array(anyId, { maxLength: 30 }), (ids) => {
        const reference = new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(ids.flatMap(bytesOf)));
        expect(tok.decode(ids)).toBe(reference);
      }),
      { numRuns: 300 },
    );
  });

  it('decoding is stateless: a cut character does not leak into the next call', () => {
    // An emoji is 4 bytes spread over two tokens; decoding only the first gives U+FFFD, and nothing of
    // it may show up in the next call (a process-wide streaming decoder would carry the bytes over).
    const emoji = [...tok.encode('😀')];
    expect(emoji.length).toBeGreaterThan(1);
    expect(tok.decode(emoji.slice(0, 1))).toMatch(/^\uFFFD+$/);
    expect(tok.decode(tok.encode(' x'))).toBe(' x');
    expect(tok.decode(emoji)).toBe('😀');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([0, vocabSize])).toThrow(new RegExp(`id ${vocabSize} at position 1`));
  });
});

describe('known encodings (values published with tiktoken)', () => {
  it('gpt2 / r50k', () => {
    expect([...createTokenizer('gpt2').encode('hello world')]).toEqual([31373, 995]);
    expect([...createTokenizer('r50k').encode('Hello world')]).toEqual([15496, 995]);
    expect(createTokenizer('r50k')).toBe(createTokenizer('gpt2'));
  });

  it('cl100k', () => {
    expect([...createTokenizer('cl100k').encode('hello world')]).toEqual([15339, 1917]);
  });

  it('o200k needs uint32 ids', () => {
    const tok = createTokenizer('o200k');
    expect(tok.vocabSize).toBeGreaterThan(65536);
    expect(tok.decode(tok.encode('héllo 世界'))).toBe('héllo 世界');
  });
});

it('an unknown tokenizer name is one clear error', () => {
  expect(() => createTokenizer('bert' as TokenizerSpec)).toThrow(DataError);
  expect(() => createTokenizer('bert' as TokenizerSpec)).toThrow(/unknown tokenizer "bert": expected one of byte, gpt2/);
});
