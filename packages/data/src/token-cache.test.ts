import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadCorpus, type Corpus } from './corpus.js';
import { DataError } from './errors.js';
import { SPLIT_NAMES, type SplitName } from './splits.js';
import { collect, useTempDir } from './temp-files.test-util.js';
import { prepareTokens, type PrepareProgress } from './token-cache.js';
import { createTokenizer } from './tokenizer.js';

const tmp = useTempDir('cache');
const gpt2 = createTokenizer('gpt2');
const byte = createTokenizer('byte');

// Unique documents with non-ASCII text, so that bytes != characters.
function makeDocs(n: number, salt = ''): string[] {
  const words = ['whale', 'sea', 'Ishmael', 'harpoon', 'café', 'naïve', 'Ahab', '鯨', 'ship', '🐋', 'deck'];
  return Array.from({ length: n }, (_, i) => {
    const len = 5 + ((i * 7) % 40);
    const body = Array.from({ length: len }, (_, j) => words[(i * 31 + j * 17) % words.length]).join(' ');
    return `${salt}Document ${i}: ${body}.`;
  });
}

const jsonl = (docs: string[]): string => docs.map((text) => JSON.stringify({ text })).join('\n') + '\n';

/** Splits a token stream at end-of-text ids and decodes each document. */
function decodeDocuments(tokens: ArrayLike<number>): string[] {
  const docs: string[] = [];
  let start = 0;
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === gpt2.endOfText) {
      docs.push(gpt2.decode(Array.prototype.slice.call(tokens, start, i) as number[]));
      start = i + 1;
    }
  }
  expect(start).toBe(tokens.length); // the stream ends with an end-of-text
  return docs;
}

async function splitDocuments(corpus: Corpus | string, cacheDir: string, seed = 0): Promise<Record<SplitName, string[]>> {
  const out = {} as Record<SplitName, string[]>;
  for (const split of SPLIT_NAMES) {
    const file = await prepareTokens({ corpus, tokenizer: gpt2, split, cacheDir, seed });
    out[split] = decodeDocuments(file.tokens!);
    expect(file.numDocuments).toBe(out[split].length);
    // Bits-per-byte bookkeeping: the byte count is the UTF-8 length of the split's documents.
    expect(file.numBytes).toBe(out[split].reduce((a, d) => a + Buffer.byteLength(d, 'utf8'), 0));
  }
  return out;
}

describe('splits through the token cache', () => {
  it('are disjoint, cover every document once, in corpus order, with exact byte counts', async () => {
    const docs = makeDocs(300);
    const path = await tmp.write('c1.jsonl', jsonl(docs));
    const splits = await splitDocuments(path, await tmp.fresh());
    const all = [...splits.train, ...splits.validation, ...splits.test];
    expect([...all].sort()).toEqual([...docs].sort());
    for (const split of SPLIT_NAMES) {
      // Stream order within a split is corpus order.
      const positions = splits[split].map((d) => docs.indexOf(d));
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
    }
    expect(splits.train.length).toBeGreaterThan(240);
    expect(splits.validation.length).toBeGreaterThan(3);
    expect(splits.test.length).toBeGreaterThan(3);
  });

  it('are stable: reordering documents or adding new ones moves no document', async () => {
    const docs = makeDocs(200);
    const base = await splitDocuments(await tmp.write('c2.jsonl', jsonl(docs)), await tmp.fresh());
    const shuffled = [...docs].reverse().concat(makeDocs(50, 'new '));
    const moved = await splitDocuments(await tmp.write('c2b.jsonl', jsonl(shuffled)), await tmp.fresh());
    for (const split of SPLIT_NAMES) {
      for (const d of base[split]) expect(moved[split]).toContain(d);
    }
  });

  it('depend on the seed', async () => {
    const path = await tmp.write('c3.jsonl', jsonl(makeDocs(200)));
    const a = await splitDocuments(path, await tmp.fresh(), 1);
    const b = await splitDocuments(path, await tmp.fresh(), 2);
    expect(a.validation).not.toEqual(b.validation);
  });

  it('the byte tokenizer sees the same documents: tokens are the UTF-8 bytes of the split, concatenated', async () => {
    const docs = makeDocs(120);
    const path = await tmp.write('c4.jsonl', jsonl(docs));
    const splits = await splitDocuments(path, await tmp.fresh());
    const cacheDir = await tmp.fresh();
    for (const split of SPLIT_NAMES) {
      const file = await prepareTokens({ corpus: path, tokenizer: byte, split, cacheDir });
      const expected = Buffer.from(splits[split].join(''), 'utf8');
      expect(file.header.dtype).toBe('uint16');
      expect(file.numTokens).toBe(expected.length);
      expect(file.numBytes).toBe(expected.length);
      expect([...file.tokens!]).toEqual([...expected]);
    }
  });
});

describe('prepareTokens', () => {
  it('builds all splits in one pass, then serves them from the cache', async () => {
    const path = await tmp.write('c5.jsonl', jsonl(makeDocs(100)));
    const corpus = await loadCorpus(path);
    let passes = 0;
    const counted: Corpus = {
      ...corpus,
      documents: () => {
        passes++;
        return corpus.documents();
      },
    };
    const cacheDir = await tmp.fresh();
    const first = await prepareTokens({ corpus: counted, tokenizer: gpt2, split: 'train', cacheDir });
    expect(first.cache).toEqual({ hit: false, reason: 'missing: no cache entry' });
    const again = await prepareTokens({ corpus: counted, tokenizer: gpt2, split: 'train', cacheDir });
    const validation = await prepareTokens({ corpus: counted, tokenizer: gpt2, split: 'validation', cacheDir });
    expect(again.cache.hit).toBe(true);
    expect(validation.cache.hit).toBe(true);
    expect(passes).toBe(1);
    expect([...again.tokens!]).toEqual([...first.tokens!]);
    expect(again.header).toEqual(first.header);
    expect(first.header).toMatchObject({
      format: 'peer-data-tokens',
      version: 1,
      tokenizer: 'gpt2',
      vocabSize: 50257,
      endOfText: 50256,
      dtype: 'uint16',
      byteOrder: 'little-endian',
      split: 'train',
      seed: 0,
      fractions: { train: 0.9, validation: 0.05, test: 0.05 },
      corpus: { name: 'c5.jsonl', kind: 'jsonl', source: path, numDocuments: 100 },
    });
    expect(first.header.checksum).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('concurrent requests for two splits share one build', async () => {
    const path = await tmp.write('c6.jsonl', jsonl(makeDocs(100)));
    const corpus = await loadCorpus(path);
    let passes = 0;
    const counted: Corpus = { ...corpus, documents: () => (passes++, corpus.documents()) };
    const cacheDir = await tmp.fresh();
    const [train, validation] = await Promise.all(
      (['train', 'validation'] as const).map((split) => prepareTokens({ corpus: counted, tokenizer: gpt2, split, cacheDir })),
    );
    expect(passes).toBe(1);
    expect(train!.numTokens).toBeGreaterThan(validation!.numTokens);
  });

  it('reports progress: monotone, ending at the corpus size with every token counted', async () => {
    const docs = makeDocs(3000);
    const path = await tmp.write('c7.jsonl', jsonl(docs));
    const events: PrepareProgress[] = [];
    const cacheDir = await tmp.fresh();
    await prepareTokens({ corpus: path, tokenizer: byte, split: 'train', cacheDir, onProgress: (p) => events.push(p) });
    const size = Buffer.byteLength(jsonl(docs));
    expect(events.length).toBeGreaterThan(0);
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.bytes).toBeGreaterThanOrEqual(events[i - 1]!.bytes);
      expect(events[i]!.tokens).toBeGreaterThanOrEqual(events[i - 1]!.tokens);
    }
    const last = events.at(-1)!;
    expect(last).toEqual({ bytes: size, tokens: Buffer.byteLength(docs.join('')), totalBytes: size, documents: 3000 });
  });

  it('reads on demand when not loaded into memory, with the same tokens', async () => {
    const path = await tmp.write('c8.jsonl', jsonl(makeDocs(100)));
    const cacheDir = await tmp.fresh();
    const loaded = await prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir });
    const lazy = await prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir, inMemory: false });
    expect(lazy.tokens).toBeNull();
    const out = new Int32Array(lazy.numTokens);
    lazy.read(0, lazy.numTokens, out, 0);
    expect([...out]).toEqual([...loaded.tokens!]);
    const part = new Int32Array(10);
    lazy.read(17, 7, part, 3);
    expect([...part.subarray(3, 10)]).toEqual([...loaded.tokens!.subarray(17, 24)]);
    expect(() => lazy.read(lazy.numTokens - 2, 3, part, 0)).toThrow(RangeError);
    lazy.close();
    expect(() => lazy.read(0, 1, part, 0)).toThrow(/closed/);
    // Auto mode keeps large files on disk.
    const auto = await prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir, maxInMemoryBytes: 16 });
    expect(auto.tokens).toBeNull();
    auto.close();
  });

  it('passes corpusOptions to loadCorpus for a spec', async () => {
    const path = await tmp.write('c10.jsonl', '{"body": "alpha"}\n{"body": "beta"}\n');
    const file = await prepareTokens({
      corpus: path,
      corpusOptions: { textField: 'body' },
      tokenizer: byte,
      split: 'train',
      cacheDir: await tmp.fresh(),
      fractions: { train: 1 },
    });
    expect(Buffer.from(Uint8Array.from(file.tokens!)).toString()).toBe('alphabeta');
  });

  it('uses uint32 files for vocabularies over 65 536 ids', async () => {
    const path = await tmp.write('c9.jsonl', jsonl(makeDocs(60)));
    const o200k = createTokenizer('o200k');
    const file = await prepareTokens({ corpus: path, tokenizer: o200k, split: 'train', cacheDir: await tmp.fresh() });
    expect(file.header.dtype).toBe('uint32');
    expect(file.tokens).toBeInstanceOf(Uint32Array);
    expect(file.tokens!.at(-1)).toBe(o200k.endOfText);
  });

  it('works on the built-in corpus', async () => {
    const file = await prepareTokens({ corpus: 'moby-dick', tokenizer: 'byte', split: 'validation', cacheDir: await tmp.fresh() });
    const docs = await collect(await loadCorpus('moby-dick'));
    expect(file.header.corpus.numDocuments).toBe(docs.length);
    expect(file.numTokens).toBe(file.numBytes);
    expect(file.numDocuments).toBeGreaterThan(0);
  });
});

describe('bad input', () => {
  it('an empty corpus (no document with text) is an error and writes nothing', async () => {
    const path = await tmp.write('empty.jsonl', '{"text": ""}\n\n{"text": ""}\n');
    const cacheDir = await tmp.fresh();
    await expect(prepareTokens({ corpus: path, tokenizer: byte, split: 'train', cacheDir })).rejects.toThrow(
      `${path}: empty corpus: no documents with text`,
    );
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('an empty split is an error naming split, corpus, fractions and seed', async () => {
    const path = await tmp.write('one.jsonl', jsonl(makeDocs(5)));
    const cacheDir = await tmp.fresh();
    const ok = await prepareTokens({ corpus: path, tokenizer: byte, split: 'train', cacheDir, fractions: { train: 1 } });
    expect(ok.numDocuments).toBe(5);
    await expect(prepareTokens({ corpus: path, tokenizer: byte, split: 'test', cacheDir, fractions: { train: 1 } })).rejects.toThrow(
      `${path}: split "test" of corpus one.jsonl is empty: none of its 5 documents fell in it (fractions {"train":1,"validation":0,"test":0}, seed 0)`,
    );
  });

  it('bad arguments name the argument and value', async () => {
    const base = { corpus: 'sotu', tokenizer: byte, cacheDir: '/tmp/never-used' } as const;
    await expect(prepareTokens({ ...base, split: 'dev' as 'train' })).rejects.toThrow('split must be one of train, validation, test, got "dev"');
    await expect(prepareTokens({ ...base, split: 'train', seed: 1.5 })).rejects.toThrow('seed must be a safe integer, got 1.5');
    await expect(prepareTokens({ ...base, split: 'train', fractions: { train: 0.5 } })).rejects.toThrow(/must sum to 1/);
    await expect(prepareTokens({ ...base, split: 'train', cacheDir: '' })).rejects.toThrow('cacheDir must be a folder path, got ""');
    await expect(prepareTokens({ ...base, split: 'train', tokenizer: 'gpt5' as 'gpt2' })).rejects.toThrow(DataError);
  });
});
