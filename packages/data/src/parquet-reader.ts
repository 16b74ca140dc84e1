// The text column of a Parquet file, row by row, one row group in memory at a time (hyparquet reads
// only that column's chunk of that group). Every codec Parquet writers use is decoded
// (hyparquet-compressors: snappy, gzip, brotli, zstd, lz4). A file that is not Parquet, a damaged
// footer or a damaged column chunk is one DataError naming the file and the byte range at fault.
import type * as Hyparquet from 'hyparquet';
import type { AsyncBuffer, FileMetaData } from 'hyparquet';
import { DataError } from './errors.js';

// hyparquet is ESM-only: imported on first use, so the CJS build loads without it (Node < 20.19
// cannot require ES modules) and corpora without Parquet never load it.
const hyparquet = () => import('hyparquet');
const codecs = async () => (await import('hyparquet-compressors')).compressors;

export interface ParquetText {
  /** The cell, as stored (possibly empty). */
  text: string;
  /** 1-based row number in the file. */
  row: number;
  /** Bytes of the file covered once this row's group is read (progress; ends at the file size). */
  position: number;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function readMetadata(file: string): Promise<{ metadata: FileMetaData; size: number; buffer: AsyncBuffer }> {
  const { asyncBufferFromFile, parquetMetadataAsync } = await hyparquet();
  let buffer;
  try {
    buffer = await asyncBufferFromFile(file);
  } catch (err) {
    throw new DataError(`cannot open: ${message(err)}`, { file });
  }
  const size = buffer.byteLength;
  try {
    return { metadata: await parquetMetadataAsync(buffer), size, buffer };
  } catch (err) {
    // The footer is the last 8 bytes (metadata length, then PAR1) and the metadata before it.
    throw new DataError(`not a readable Parquet file: corrupt footer or metadata before byte ${size} (${message(err)})`, { file });
  }
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  const text = typeof value === 'bigint' ? `${value}n` : value instanceof Uint8Array ? `bytes [${value.slice(0, 16).join(', ')}${value.length > 16 ? ', ...' : ''}]` : JSON.stringify(value) ?? String(value);
  return `${typeof value} ${text.length > 80 ? `${text.slice(0, 80)}...` : text}`;
}

/** Top-level column names, in schema order. */
function columnNames(parquetSchema: typeof Hyparquet.parquetSchema, metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((c) => c.element.name);
}

/**
 * The strings of column `field`, in row order. Throws a DataError naming the file when the column
 * is missing or does not hold text, and the row when a cell is null.
 */
export async function* readParquetColumn(file: string, field: string): AsyncGenerator<ParquetText> {
  const { parquetReadObjects, parquetSchema } = await hyparquet();
  const compressors = await codecs();
  const { metadata, size, buffer } = await readMetadata(file);
  const column = parquetSchema(metadata).children.find((c) => c.element.name === field);
  if (column === undefined) {
    throw new DataError(
      `no column ${JSON.stringify(field)} (columns: ${columnNames(parquetSchema, metadata).map((n) => JSON.stringify(n)).join(', ')}); choose the text column with textField / --text-field`,
      { file },
    );
  }
  if (column.children.length > 0 || column.element.type !== 'BYTE_ARRAY') {
    const type = column.children.length > 0 ? 'a nested group' : (column.element.type ?? 'no type');
    throw new DataError(`column ${JSON.stringify(field)} holds ${type}, not text (BYTE_ARRAY strings)`, { file });
  }
  const groups = metadata.row_groups;
  let rowStart = 0;
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g]!;
    const numRows = Number(group.num_rows);
    const rowEnd = rowStart + numRows;
    const chunk = group.columns.find((c) => c.meta_data?.path_in_schema.join('.') === field)?.meta_data;
    const chunkStart = chunk ? Number(chunk.dictionary_page_offset ?? chunk.data_page_offset) : 0;
    const chunkEnd = chunk ? chunkStart + Number(chunk.total_compressed_size) : size;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: buffer, metadata, columns: [field], rowStart, rowEnd, compressors });
    } catch (err) {
      throw new DataError(
        `corrupt Parquet data in row group ${g} (rows ${rowStart + 1}-${rowEnd}), column ${JSON.stringify(field)} at bytes ${chunkStart}-${chunkEnd}: ${message(err)}`,
        { file },
      );
    }
    if (rows.length !== numRows) {
      throw new DataError(
        `corrupt Parquet data in row group ${g}, column ${JSON.stringify(field)} at bytes ${chunkStart}-${chunkEnd}: ${rows.length} values for ${numRows} rows`,
        { file },
      );
    }
    const position = g === groups.length - 1 ? size : Math.min(size, chunkEnd);
    for (let i = 0; i < rows.length; i++) {
      const value = rows[i]![field];
      const row = rowStart + i + 1;
      if (typeof value !== 'string') {
        throw new DataError(`expected a string in column ${JSON.stringify(field)}, got ${describe(value)}`, {
          file,
          row,
        });
      }
      yield { text: value, row, position };
    }
    rowStart = rowEnd;
  }
}
