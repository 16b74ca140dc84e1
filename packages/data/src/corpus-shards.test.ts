import { createHash } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from './corpus.js';
import { DataError } from './errors.js';
import { FIXTURES, fixture, referenceDocuments } from './fixtures.test-util.js';
import { collect, useTempDir } from './temp-files.test-util.js';
import { SPLIT_NAMES } from './splits.js';
import { prepareTokens } from './token-cache.js';
import { createTokenizer } from './tokenizer.js';

const tmp = useTempDir('shards');
const reference = referenceDocuments();
const SHARDS = ['c4-train.00000-of-00003.json.gz', 'c4-train.00001-of-00003.json.gz', 'c4-train.00002-of-00003.json.gz'];

/** docs.jsonl lines per shard (make-fixtures.sh: lines 1-15, 16-30, 31-45). */
const shardOf = (line: number): [string, number] => {
  const s = Math.min(2, Math.floor((line - 1) / 15));
  return [SHARDS[s]!, line - 15 * s];
};

describe('folders and globs of shards', () => {
  it('a glob: the matching shards in path order, each read as a file, ids naming shard and line', async () => {
    const spec = join(FIXTURES, 'shards/en/c4-train.0000*-of-00003.json.gz');
    const corpus = await loadCorpus(spec);
    expect(corpus.kind).toBe('glob');
    expect(corpus.name).toBe(spec);
    const docs = await collect(corpus);
    expect(docs.map((d) => d.text)).toEqual(reference.map((r) => r.text));
    expect(docs.map((d) => d.id)).toEqual(reference.map((r) => shardOf(r.line).join(':')));
    let sizes = 0;
    for (const s of SHARDS) sizes += (await readFile(join(FIXTURES, 'shards/en', s))).length;
    expect(corpus.byteSize).toBe(sizes);
    expect(docs.at(-1)!.position).toBe(sizes);
    const positions = docs.map((d) => d.position);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  it('a relative glob with a brace and a class, from another working directory', async () => {
    const cwd = process.cwd();
    process.chdir(FIXTURES);
    try {
      const docs = await collect(await loadCorpus('shards/en/c4-train.0000{0,2}-of-0000[3].json.gz'));
      expect(docs.map((d) => d.text)).toEqual(reference.filter((r) => r.line <= 15 || r.line > 30).map((r) => r.text));
    } finally {
      process.chdir(cwd);
    }
  });

  it('a glob matching nothing names the pattern and the folder searched', async () => {
    const err = await loadCorpus(join(FIXTURES, 'shards/en/*.parquet')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as Error).message).toBe(`${FIXTURES}/shards/en/*.parquet: no files match the pattern "*.parquet" in ${FIXTURES}/shards/en`);
  });

  it('a folder: text files (plain or .gz) are one document each, JSONL and Parquet files are shards', async () => {
    const corpus = await loadCorpus(fixture('shards'));
    expect(corpus.kind).toBe('folder');
    const docs = await collect(corpus);
    expect(docs.map((d) => d.text)).toEqual([...reference.map((r) => r.text), 'A note, one document.\n']);
    expect(docs.map((d) => d.id)).toEqual([...reference.map((r) => `en/${shardOf(r.line).join(':')}`), 'note.txt.gz']);

    const root = await tmp.fresh('mixed');
    await copyFile(fixture('docs.parquet'), join(root, 'b.parquet'));
    await tmp.write(join(root, 'a.md'), 'first');
    await copyFile(fixture('docs.txt.gz'), join(root, 'c.txt.gz'));
    const mixed = await collect(await loadCorpus(root));
    expect(mixed.map((d) => d.id)).toEqual(['a.md', ...reference.map((r) => `b.parquet:${r.line}`), 'c.txt.gz']);
    expect(mixed.at(-1)!.text).toBe(await readFile(fixture('docs.txt'), 'utf8'));
  });

  it('a folder of plain text files keeps the fingerprint of earlier versions (its caches stay valid)', async () => {
    const root = await tmp.fresh('plain');
    await tmp.write(join(root, 'a.txt'), 'alpha');
    await tmp.write(join(root, 'b/c.md'), 'gamma');
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
    const expected = createHash('sha256')
      .update(`peer-data corpus v1\0folder\0${JSON.stringify({ extensions: ['.txt', '.text', '.md'] })}\0`)
      .update(`a.txt\x005\0${sha('alpha')}\0`)
      .update(`b/c.md\x005\0${sha('gamma')}\0`)
      .digest('hex');
    expect(await (await loadCorpus(root)).fingerprint()).toBe(`sha256:${expected}`);
  });

  it('the text field is part of the fingerprint of shards, not of plain text', async () => {
    const shards = fixture('shards');
    expect(await (await loadCorpus(shards, { textField: 'body' })).fingerprint()).not.toBe(await (await loadCorpus(shards)).fingerprint());
    const root = await tmp.fresh('plain2');
    await tmp.write(join(root, 'a.txt'), 'alpha');
    expect(await (await loadCorpus(root, { textField: 'body' })).fingerprint()).toBe(await (await loadCorpus(root)).fingerprint());
  });
});

describe('the same documents in any format give the same splits and tokens', () => {
  it('docs.jsonl, docs.jsonl.gz, docs.parquet and the glob of shards: identical token splits, each cached on its own', async () => {
    const gpt2 = createTokenizer('gpt2');
    const cacheDir = await tmp.fresh('cache');
    const specs = [fixture('docs.jsonl'), fixture('docs.jsonl.gz'), fixture('docs.parquet'), join(FIXTURES, 'shards/en/*.json.gz')];
    const results = [];
    for (const corpus of specs) {
      const bySplit: Record<string, number[]> = {};
      for (const split of SPLIT_NAMES) {
        const file = await prepareTokens({ corpus, tokenizer: gpt2, split, cacheDir, seed: 3, fractions: { train: 0.6, validation: 0.2, test: 0.2 } });
        // One pass tokenizes all splits: the first request builds, the others find them.
        expect(file.cache.hit).toBe(split !== 'train');
        bySplit[split] = Array.from(file.tokens!);
      }
      results.push(bySplit);
      // Loaded again: from the cache.
      expect((await prepareTokens({ corpus, tokenizer: gpt2, split: 'train', cacheDir, seed: 3, fractions: { train: 0.6, validation: 0.2, test: 0.2 } })).cache.hit).toBe(true);
    }
    expect(results[0]!.validation!.length).toBeGreaterThan(0);
    for (const r of results.slice(1)) expect(r).toEqual(results[0]);
  });
});
