import * as hyparquet from 'hyparquet';
import { describe, expect, it, vi } from 'vitest';
import { fixture } from './fixtures.test-util.js';
import { readParquetColumn } from './parquet-reader.js';

vi.mock('hyparquet', async (importOriginal) => {
  const original = await importOriginal<typeof hyparquet>();
  return { ...original, parquetReadObjects: vi.fn(original.parquetReadObjects) };
});

describe('readParquetColumn', () => {
  it('reads one row group at a time, only the text column, and only when the previous group is consumed', async () => {
    const read = vi.mocked(hyparquet.parquetReadObjects);
    read.mockClear();
    const rows = readParquetColumn(fixture('docs.parquet'), 'text');
    const calls = (): [number | undefined, number | undefined, string[] | undefined][] =>
      read.mock.calls.map(([o]) => [o.rowStart, o.rowEnd, o.columns]);
    for (let i = 0; i < 10; i++) await rows.next();
    expect(calls()).toEqual([[0, 10, ['text']]]);
    await rows.next();
    expect(calls()).toEqual([
      [0, 10, ['text']],
      [10, 20, ['text']],
    ]);
    for await (const _ of rows) void _;
    expect(calls().map(([s, e]) => [s, e])).toEqual([
      [0, 10],
      [10, 20],
      [20, 30],
      [30, 40],
      [40, 45],
    ]);
  });
});
