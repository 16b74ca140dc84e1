// SHA-256 of a file's bytes, read in 1 MiB pieces into one reused buffer (a stream would allocate a
// fresh chunk per read, and those pile up until GC).
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/** The lowercase hex SHA-256 of the file at `path`. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buffer = new Uint8Array(1 << 20);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}
