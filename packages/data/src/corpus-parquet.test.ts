import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadCorpus } from './corpus.js';
import { DataError } from './errors.js';
import { fixture, referenceDocuments } from './fixtures.test-util.js';
import { readParquetColumn } from './parquet-reader.js';
import { collect } from './temp-files.test-util.js';

const reference = referenceDocuments();

async function dataError(promise: Promise<unknown>): Promise<DataError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataError);
  return err as DataError;
}

describe('Parquet corpora (fixtures written by parquet-wasm)', () => {
  it.each(['docs.parquet', 'docs.zstd.parquet', 'docs.gzip.parquet'])('%s: one document per row, the texts of docs.jsonl', async (name) => {
    const corpus = await loadCorpus(fixture(name));
    expect(corpus.kind).toBe('parquet');
    const docs = await collect(corpus);
    expect(docs.map((d) => d.text)).toEqual(reference.map((r) => r.text));
    // Rows are 1-based, like lines: row r of the file is line r of docs.jsonl.
    expect(docs.map((d) => d.id)).toEqual(reference.map((r) => `${name}:${r.line}`));
    const size = readFileSync(fixture(name)).length;
    expect(corpus.byteSize).toBe(size);
    const positions = docs.map((d) => d.position);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(positions.at(-1)).toBe(size);
  });

  it('reads row group by row group: progress moves once per group of 10 rows', async () => {
    const cells = await collect(readParquetColumn(fixture('docs.parquet'), 'text'));
    expect(cells.length).toBe(45);
    expect(cells.map((c) => c.row)).toEqual(Array.from({ length: 45 }, (_, i) => i + 1));
    const positions = [...new Set(cells.map((c) => c.position))];
    expect(positions.length).toBe(5);
    for (let g = 0; g < 5; g++) expect(new Set(cells.slice(g * 10, g * 10 + 10).map((c) => c.position)).size).toBe(1);
    // The empty text (row 8) is a cell, but not a document.
    expect(cells[7]!.text).toBe('');
  });

  it('textField chooses the column; a missing column lists the columns there are', async () => {
    const docs = await collect(await loadCorpus(fixture('content.parquet'), { textField: 'content' }));
    expect(docs.map((d) => d.text)).toEqual(reference.map((r) => r.text));
    const path = fixture('content.parquet');
    const err = await dataError(collect(await loadCorpus(path)));
    expect(err.message).toBe(`${path}: no column "text" (columns: "id", "content"); choose the text column with textField / --text-field`);
  });

  it('a column that is not text is refused, naming its type', async () => {
    const path = fixture('docs.parquet');
    const err = await dataError(collect(await loadCorpus(path, { textField: 'id' })));
    expect(err.message).toBe(`${path}: column "id" holds INT32, not text (BYTE_ARRAY strings)`);
  });

  it('a null text names the file, the row and the column', async () => {
    const path = fixture('null-text.parquet');
    const corpus = await loadCorpus(path);
    const seen: string[] = [];
    const err = await dataError(
      (async () => {
        for await (const d of corpus) seen.push(d.id);
      })(),
    );
    expect(seen).toEqual(['null-text.parquet:1', 'null-text.parquet:2', 'null-text.parquet:3']);
    expect(err.row).toBe(4);
    expect(err.message).toBe(`${path}: row 4: expected a string in column "text", got null`);
  });

  it('a cut-off file: one error naming the file and the footer offset', async () => {
    const path = fixture('truncated.parquet');
    const size = readFileSync(path).length;
    const err = await dataError(collect(await loadCorpus(path)));
    expect(err.message).toBe(
      `${path}: not a readable Parquet file: corrupt footer or metadata before byte ${size} (parquet file invalid (footer != PAR1))`,
    );
  });

  it('a damaged column chunk: one error naming the file, the row group and the chunk bytes holding the damage', async () => {
    const path = fixture('corrupt.parquet');
    const good = readFileSync(fixture('docs.parquet'));
    const bad = readFileSync(path);
    const firstDamaged = good.findIndex((b, i) => b !== bad[i]);
    const seen: string[] = [];
    const err = await dataError(
      (async () => {
        for await (const d of await loadCorpus(path)) seen.push(d.text);
      })(),
    );
    const m = /corrupt Parquet data in row group (\d+) \(rows (\d+)-(\d+)\), column "text" at bytes (\d+)-(\d+): /.exec(err.message);
    expect(m, err.message).not.toBeNull();
    const [group, first, last, start, end] = m!.slice(1).map(Number) as [number, number, number, number, number];
    expect(start).toBeLessThanOrEqual(firstDamaged);
    expect(end).toBeGreaterThan(firstDamaged);
    expect([first, last]).toEqual([group * 10 + 1, group * 10 + 10]);
    // The groups before the damaged one were read intact.
    expect(seen).toEqual(reference.filter((r) => r.line <= group * 10).map((r) => r.text));
  });

  it('a file that is not Parquet at all', async () => {
    const path = fixture('docs.txt');
    const err = await dataError(collect(readParquetColumn(path, 'text')));
    expect(err.message).toContain(`${path}: not a readable Parquet file`);
  });
});
