// One error type for everything that is wrong with the data (not with this library): a missing path,
// a file that is not UTF-8 text, a bad JSONL line or Parquet row, a corrupt gzip or Parquet file, a
// corpus too small for the requested batches. The message always names the file (and line or row,
// where there is one) and the offending value.

export interface DataErrorDetails {
  /** The file or folder at fault, when there is one. */
  file?: string;
  /** 1-based line number inside `file` (JSONL and text files). */
  line?: number;
  /** 1-based row number inside `file` (Parquet). */
  row?: number;
}

export class DataError extends Error {
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly row: number | undefined;

  constructor(message: string, details: DataErrorDetails = {}) {
    const at = details.line !== undefined ? `:${details.line}` : details.row !== undefined ? `: row ${details.row}` : '';
    const where = details.file === undefined ? '' : `${details.file}${at}: `;
    super(`${where}${message}`);
    this.name = 'DataError';
    this.file = details.file;
    this.line = details.line;
    this.row = details.row;
  }
}
