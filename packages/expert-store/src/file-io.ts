// Positional, chunked file I/O for multi-GiB arrays (one read/write call is capped near 2 GiB), and
// the fsync calls that make a write durable.
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { endianness } from 'node:os';

/** Bytes moved per read/write call: large enough to stream at disk speed, far below the 2 GiB cap. */
export const IO_CHUNK_BYTES = 64 * 1024 * 1024;

/** Thrown for a file that cannot be used: names the file and what is wrong with it. */
export class StoreFileError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'StoreFileError';
  }
}

export function assertLittleEndian(): void {
  // safetensors data is little-endian and typed arrays use the platform order.
  if (endianness() !== 'LE') throw new Error('@peer/expert-store reads and writes safetensors on little-endian platforms only');
}

/** The bytes of a typed array, without copying. */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Writes all of `bytes` at `position`, in chunks; feeds each chunk to `hash` if given. */
export function writeAllAt(fd: number, bytes: Uint8Array, position: number, hash?: Hash): number {
  let done = 0;
  while (done < bytes.length) {
    const chunk = bytes.subarray(done, Math.min(bytes.length, done + IO_CHUNK_BYTES));
    let written = 0;
    while (written < chunk.length) {
      written += writeSync(fd, chunk, written, chunk.length - written, position + done + written);
    }
    hash?.update(chunk);
    done += chunk.length;
  }
  return position + done;
}

/**
 * Fills `bytes` from `position`, in chunks. Throws a StoreFileError naming `file` if the file ends
 * first (a truncated file).
 */
export function readAllAt(fd: number, bytes: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < bytes.length) {
    const want = Math.min(bytes.length - done, IO_CHUNK_BYTES);
    const got = readSync(fd, bytes, done, want, position + done);
    if (got === 0) {
      throw new StoreFileError(file, `ends at byte ${position + done}, but ${bytes.length - done} more bytes were expected there (truncated file)`);
    }
    done += got;
  }
}

/** SHA-256 (hex) of a whole file, streamed: memory use is one chunk. */
export function sha256File(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const hash = createHash('sha256');
    const size = fstatSync(fd).size;
    const buffer = new Uint8Array(Math.min(IO_CHUNK_BYTES, Math.max(1, size)));
    let position = 0;
    while (position < size) {
      const got = readSync(fd, buffer, 0, Math.min(buffer.length, size - position), position);
      if (got === 0) break;
      hash.update(buffer.subarray(0, got));
      position += got;
    }
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** Flushes a directory entry table to disk (so that a rename or a new file in it survives a crash). */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // platforms that cannot open directories (Windows) make renames durable themselves
  }
  try {
    fsyncSync(fd);
  } catch {
    // EINVAL/EPERM on file systems without directory fsync: nothing more can be done
  } finally {
    closeSync(fd);
  }
}
