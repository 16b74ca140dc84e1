// The bytes of a corpus file, plain or gzip-compressed (`.gz`), pulled in pieces into a caller's
// buffer: memory stays at a few buffers however large the file is. Gzip goes through node:zlib's
// streaming inflater (concatenated members, as `cat a.gz b.gz` makes, are one stream); a corrupt or
// truncated file is one DataError naming the file and the compressed byte offset.
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { DataError } from './errors.js';

export interface ByteReader {
  /** Copies up to `length` bytes into out[offset, ...); resolves to the count, 0 only at the end. */
  read(out: Uint8Array, offset: number, length: number): Promise<number>;
  /** Bytes of the file on disk consumed so far (compressed bytes for gzip): progress, ends at the file size. */
  readonly consumed: number;
  /** True for gzip: byte offsets inside the text are then offsets in the decompressed stream. */
  readonly compressed: boolean;
  close(): Promise<void>;
}

/** Whether `path` names a gzip-compressed file (by its `.gz` suffix). */
export function isGzipPath(path: string): boolean {
  return path.toLowerCase().endsWith('.gz');
}

/** Opens `file` for reading; `.gz` files are decompressed on the fly. */
export async function openByteReader(file: string): Promise<ByteReader> {
  return isGzipPath(file) ? openGzipReader(file) : openPlainReader(file);
}

async function openPlainReader(file: string): Promise<ByteReader> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new DataError(`cannot open: ${(err as Error).message}`, { file });
  }
  const fh = handle;
  let consumed = 0;
  return {
    get consumed() {
      return consumed;
    },
    compressed: false,
    async read(out, offset, length) {
      const { bytesRead } = await fh.read(out, offset, length, null);
      consumed += bytesRead;
      return bytesRead;
    },
    close: () => fh.close(),
  };
}

const GZIP_READ_BYTES = 1 << 20;
const GZIP_OUT_BYTES = 1 << 16;
const LOCATE_PIECE_BYTES = 1024;

/**
 * The compressed byte range [start, end) in which inflating `file` fails, found by feeding a fresh
 * inflater the file in small pieces (the streaming inflater only knows the failing output chunk,
 * which may cover tens of kilobytes). Undefined when it does not fail again.
 */
export async function locateGzipError(file: string): Promise<[number, number] | undefined> {
  const gunzip = createGunzip();
  let failed = false;
  let wake = (): void => {};
  gunzip.on('error', () => {
    failed = true;
    wake();
  });
  gunzip.resume(); // the output is not needed
  const handle = await open(file, 'r');
  try {
    const piece = Buffer.alloc(LOCATE_PIECE_BYTES);
    for (let at = 0; ; ) {
      const { bytesRead } = await handle.read(piece, 0, piece.length, at);
      if (bytesRead === 0) return undefined;
      // Settles once the piece is inflated, or on the error it causes (a failed stream drops the callback).
      await new Promise<void>((done) => {
        wake = done;
        gunzip.write(Buffer.from(piece.subarray(0, bytesRead)), () => done());
      });
      if (failed) return [at, at + bytesRead];
      at += bytesRead;
    }
  } finally {
    await handle.close();
    gunzip.destroy();
  }
}

async function openGzipReader(file: string): Promise<ByteReader> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new DataError(`cannot open: ${(err as Error).message}`, { file });
  }
  const source = createReadStream(file, { highWaterMark: GZIP_READ_BYTES });
  const gunzip = createGunzip({ chunkSize: GZIP_OUT_BYTES });
  // A read error of the file (not a zlib error) reaches the consumer through the inflater.
  source.on('error', (err) => gunzip.destroy(err));
  source.pipe(gunzip);
  const pieces = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let pending: Buffer = Buffer.alloc(0);
  let done = false;
  // Compressed bytes the inflater has consumed: zlib counts them per output chunk, so an error is
  // located to within one chunk (at most GZIP_OUT_BYTES of output).
  const consumedNow = (): number => Math.min(gunzip.bytesWritten, size);
  const corrupt = async (err: unknown): Promise<DataError> => {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code !== 'string' || !e.code.startsWith('Z_')) {
      return new DataError(`cannot read: ${e.message}`, { file });
    }
    if (e.code === 'Z_BUF_ERROR') {
      return new DataError(`truncated gzip file: the compressed data ends early, at byte ${size} (${e.message})`, { file });
    }
    const range = await locateGzipError(file).catch(() => undefined);
    const where = range ? `in compressed bytes ${range[0]}-${range[1]}` : `at or after compressed byte ${consumedNow()}`;
    return new DataError(`corrupt gzip data ${where} of ${size}: ${e.message}`, { file });
  };
  return {
    get consumed() {
      return done ? size : consumedNow();
    },
    compressed: true,
    async read(out, offset, length) {
      while (pending.length === 0 && !done) {
        let next: IteratorResult<Buffer>;
        try {
          next = await pieces.next();
        } catch (err) {
          throw await corrupt(err);
        }
        if (next.done) done = true;
        else pending = next.value;
      }
      const n = Math.min(length, pending.length);
      out.set(pending.subarray(0, n), offset);
      pending = pending.subarray(n);
      return n;
    },
    async close() {
      source.destroy();
      gunzip.destroy();
    },
  };
}
