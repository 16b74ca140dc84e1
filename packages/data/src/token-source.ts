// Random access to a token stream, in memory (a typed array) or on disk (a token file read on demand),
// so that the batcher works the same for a 10 MB corpus and a 10 GB one.
import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { DataError } from './errors.js';

export type TokenArray = Uint16Array | Uint32Array | Int32Array;

export interface TokenSource {
  readonly numTokens: number;
  /** Where the tokens come from, for error messages (a file path, or `tokens`). */
  readonly label: string;
  /** Copies tokens [start, start + count) into out[outOffset, outOffset + count). */
  read(start: number, count: number, out: Int32Array, outOffset: number): void;
}

export type TokenDtype = 'uint16' | 'uint32';

export const BYTES_PER_TOKEN: Record<TokenDtype, number> = { uint16: 2, uint32: 4 };

/** uint16 when every id fits (vocabulary of at most 65 536), else uint32. */
export function dtypeForVocab(vocabSize: number): TokenDtype {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

export function assertLittleEndian(): void {
  // Token files are little-endian and read through typed-array views, which use the host order.
  if (endianness() !== 'LE') throw new DataError('token files need a little-endian host');
}

function checkRange(source: TokenSource, start: number, count: number, out: Int32Array, outOffset: number): void {
  if (
    !Number.isInteger(start) ||
    !Number.isInteger(count) ||
    start < 0 ||
    count < 0 ||
    start + count > source.numTokens ||
    outOffset < 0 ||
    outOffset + count > out.length
  ) {
    throw new RangeError(
      `${source.label}: cannot read tokens [${start}, ${start + count}) of ${source.numTokens} into ${out.length} slots at ${outOffset}`,
    );
  }
}

/** A token source over an in-memory array. */
export function arrayTokenSource(tokens: TokenArray | readonly number[], label = 'tokens'): TokenSource {
  const source: TokenSource = {
    numTokens: tokens.length,
    label,
    read(start, count, out, outOffset) {
      checkRange(source, start, count, out, outOffset);
      if (ArrayBuffer.isView(tokens)) out.set((tokens as TokenArray).subarray(start, start + count), outOffset);
      else for (let i = 0; i < count; i++) out[outOffset + i] = tokens[start + i]!;
    },
  };
  return source;
}

/** A token source reading a raw little-endian token file on demand; `close()` releases the file. */
export class TokenFileReader implements TokenSource {
  readonly numTokens: number;
  readonly label: string;
  private fd: number | null;
  private readonly bytesPerToken: number;
  private scratch = new Uint8Array(0);

  constructor(path: string, dtype: TokenDtype, numTokens: number) {
    assertLittleEndian();
    this.label = path;
    this.numTokens = numTokens;
    this.bytesPerToken = BYTES_PER_TOKEN[dtype];
    this.fd = openSync(path, 'r');
  }

  read(start: number, count: number, out: Int32Array, outOffset: number): void {
    checkRange(this, start, count, out, outOffset);
    if (this.fd === null) throw new DataError('token file is closed', { file: this.label });
    const bytes = count * this.bytesPerToken;
    if (this.scratch.length < bytes) this.scratch = new Uint8Array(Math.max(bytes, 2 * this.scratch.length));
    let got = 0;
    while (got < bytes) {
      const n = readSync(this.fd, this.scratch, got, bytes - got, start * this.bytesPerToken + got);
      if (n === 0) throw new DataError(`token file ends early (reading tokens [${start}, ${start + count}))`, { file: this.label });
      got += n;
    }
    const view =
      this.bytesPerToken === 2
        ? new Uint16Array(this.scratch.buffer, 0, count)
        : new Uint32Array(this.scratch.buffer, 0, count);
    out.set(view, outOffset);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
