import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from './corpus.js';
import { DataError } from './errors.js';
import { fixture, referenceDocuments } from './fixtures.test-util.js';
import { collect, useTempDir } from './temp-files.test-util.js';
import { readLines, readSections, readTextChunks } from './text-reader.js';

const tmp = useTempDir('gzip');
const reference = referenceDocuments();

/** `content` gzip-compressed by the gzip command line tool, written beside a plain copy. */
async function gzipFile(rel: string, content: string | Uint8Array): Promise<string> {
  const plain = await tmp.write(rel, content);
  execFileSync('gzip', ['-n', '-f', '-k', plain]);
  return `${plain}.gz`;
}

async function dataError(promise: Promise<unknown>): Promise<DataError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataError);
  return err as DataError;
}

describe('gzip-compressed corpora (fixtures made by the gzip tool)', () => {
  it.each(['docs.jsonl.gz', 'docs.json.gz', 'two-members.jsonl.gz'])('%s: the documents of docs.jsonl, line numbers kept', async (name) => {
    const corpus = await loadCorpus(fixture(name));
    expect(corpus.kind).toBe('jsonl');
    const docs = await collect(corpus);
    expect(docs.map((d) => d.text)).toEqual(reference.map((r) => r.text));
    expect(docs.map((d) => d.id)).toEqual(reference.map((r) => `${name}:${r.line}`));
    // Progress counts compressed bytes and ends at the file size.
    const size = readFileSync(fixture(name)).length;
    expect(corpus.byteSize).toBe(size);
    const positions = docs.map((d) => d.position);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(positions.at(-1)).toBe(size);
  });

  it('docs.txt.gz: the same sections as docs.txt, which together are its whole text', async () => {
    const opts = { sectionChars: 2000, maxSectionChars: 20000 };
    const gz = await collect(await loadCorpus(fixture('docs.txt.gz'), opts));
    const plain = await collect(await loadCorpus(fixture('docs.txt'), opts));
    expect(gz.length).toBeGreaterThan(3);
    expect(gz.map((d) => d.text)).toEqual(plain.map((d) => d.text));
    expect(gz.map((d) => d.id.replace('.txt.gz:', ':'))).toEqual(plain.map((d) => d.id.replace('.txt:', ':')));
    expect(gz.map((d) => d.text).join('')).toBe(readFileSync(fixture('docs.txt'), 'utf8'));
  });

  it('streams: chunks of a large .gz file are bounded, never split a character, and join to the text', async () => {
    // 3 MB of multi-byte text (2-, 3- and 4-byte characters cross every chunk boundary).
    const line = 'ascii café 東京 🙂 peer\n';
    const text = line.repeat(Math.ceil(3_000_000 / Buffer.byteLength(line)));
    const path = await gzipFile('big/big.txt', text);
    for (const chunkBytes of [4093, 65536, 1 << 20]) {
      const chunks = await collect(readTextChunks(path, chunkBytes));
      expect(chunks.map((c) => c.text).join('')).toBe(text);
      // At most one chunk plus the up to 3 bytes of a character carried over from the previous one.
      for (const c of chunks) expect(Buffer.byteLength(c.text)).toBeLessThanOrEqual(chunkBytes + 3);
      expect(chunks.length).toBeGreaterThanOrEqual(Math.floor(Buffer.byteLength(text) / chunkBytes));
      expect(chunks.at(-1)!.position).toBe(readFileSync(path).length);
    }
    // Lines and sections read through the same chunks.
    const lines = await collect(readLines(path, 100, 4093));
    expect(lines.length).toBe(text.split('\n').length - 1);
    expect(lines[12345]).toMatchObject({ text: line.slice(0, -1), number: 12346 });
    const sections = await collect(readSections(path, 1000, 5000, 4093));
    expect(sections.map((s) => s.text).join('')).toBe(text);
  });

  it('bad JSONL inside a .gz names the file and the line, as for plain JSONL', async () => {
    const gz = await gzipFile('bad/lines.jsonl', '{"text":"one"}\n{"text":"two"}\n{"text": 3}\n');
    const err = await dataError(collect(await loadCorpus(gz)));
    expect(err.file).toBe(gz);
    expect(err.line).toBe(3);
    expect(err.message).toContain('expected a JSON object with a string field "text"');
    const field = await dataError(collect(await loadCorpus(gz, { textField: 'body' })));
    expect(field.line).toBe(1);
    expect(field.message).toContain('"body"');
  });

  it('invalid UTF-8 inside a .gz: the offset in the decompressed text and the line', async () => {
    const bytes = Buffer.concat([Buffer.from('{"text":"ok"}\n{"text":"a'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);
    const gz = await gzipFile('bad/utf8.jsonl', bytes);
    const err = await dataError(collect(await loadCorpus(gz)));
    expect(err.message).toBe(`${gz}: not UTF-8 text: invalid byte sequence at byte 24 of the decompressed text (line 2)`);
  });

  it('a truncated gzip file: one error naming the file and where the data ends', async () => {
    const path = fixture('truncated.jsonl.gz');
    const size = readFileSync(path).length;
    const err = await dataError(collect(await loadCorpus(path)));
    expect(err.file).toBe(path);
    expect(err.message).toBe(`${path}: truncated gzip file: the compressed data ends early, at byte ${size} (unexpected end of file)`);
  });

  it('corrupt gzip data: one error naming the file and the compressed byte range holding the damage', async () => {
    const path = fixture('corrupt.jsonl.gz');
    const good = readFileSync(fixture('docs.jsonl.gz'));
    const bad = readFileSync(path);
    const firstDamaged = good.findIndex((b, i) => b !== bad[i]);
    expect(firstDamaged).toBeGreaterThan(0);
    const err = await dataError(collect(await loadCorpus(path)));
    expect(err.file).toBe(path);
    const m = /corrupt gzip data in compressed bytes (\d+)-(\d+) of (\d+): /.exec(err.message);
    expect(m, err.message).not.toBeNull();
    const [start, end, size] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(size).toBe(bad.length);
    // zlib cannot notice the damage before its first byte; the located 1 KiB piece is at or after it.
    expect(start).toBeGreaterThanOrEqual(Math.floor(firstDamaged / 1024) * 1024);
    expect(end).toBeGreaterThan(firstDamaged);
    expect(end - start).toBeLessThanOrEqual(1024);
  });

  it('a .gz file that is not gzip: the header is reported at byte 0', async () => {
    const path = fixture('not-gzip.jsonl.gz');
    const err = await dataError(collect(await loadCorpus(path)));
    expect(err.message).toBe(`${path}: corrupt gzip data in compressed bytes 0-16 of 16: incorrect header check`);
  });

  it('a gzip file of an empty text gives no documents, and the cache reports the empty corpus', async () => {
    const gz = await gzipFile('empty/none.jsonl', '\n\n');
    expect(await collect(await loadCorpus(gz))).toEqual([]);
  });

  it('gzip-compressed Parquet is refused with a reason', async () => {
    const path = join(tmp.path, 'x.parquet.gz');
    await tmp.write(path, 'x');
    const err = await dataError(loadCorpus(path));
    expect(err.message).toContain('Parquet compresses its pages itself');
  });
});
