// Test helpers: a private temporary folder per test file, and small file builders.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

export interface TempDir {
  /** The folder (valid inside tests). */
  readonly path: string;
  /** Writes a file (a path relative to the folder, or absolute), creating parents; returns its absolute path. */
  write(rel: string, content: string | Uint8Array): Promise<string>;
  /** A fresh, empty sub-folder. */
  fresh(prefix?: string): Promise<string>;
}

export function useTempDir(prefix: string): TempDir {
  let root = '';
  let counter = 0;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), `peer-data-${prefix}-`));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });
  return {
    get path() {
      return root;
    },
    async write(rel, content) {
      const path = isAbsolute(rel) ? rel : join(root, rel);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, content);
      return path;
    },
    async fresh(p = 'd') {
      const path = join(root, `${p}${counter++}`);
      await mkdir(path, { recursive: true });
      return path;
    },
  };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
