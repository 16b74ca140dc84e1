import { spawnSync } from 'node:child_process';
import { readdir, readFile, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDir } from './temp-files.test-util.js';
import { prepareTokens, type TokenFile } from './token-cache.js';
import { createTokenizer } from './tokenizer.js';

const tmp = useTempDir('invalidation');
const gpt2 = createTokenizer('gpt2');

const jsonl = (docs: string[]): string => docs.map((text) => JSON.stringify({ text })).join('\n') + '\n';
const docs = Array.from({ length: 80 }, (_, i) => `Call me Ishmael, number ${i}. ${'Some years ago. '.repeat(1 + (i % 9))}`);

async function setup(): Promise<{ path: string; cacheDir: string; file: TokenFile }> {
  const path = await tmp.write(`corpus-${Math.random().toString(36).slice(2)}.jsonl`, jsonl(docs));
  const cacheDir = await tmp.fresh();
  const file = await prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir });
  expect(file.cache.hit).toBe(false);
  return { path, cacheDir, file };
}

const prepare = (path: string, cacheDir: string, extra = {}): Promise<TokenFile> =>
  prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir, ...extra });

describe('a stale cache entry is rebuilt', () => {
  it('when the corpus content changes', async () => {
    const { path, cacheDir, file } = await setup();
    await writeFile(path, jsonl(docs.map((d) => d.replace('Ishmael', 'Queequeg'))));
    const rebuilt = await prepare(path, cacheDir);
    expect(rebuilt.cache.hit).toBe(false);
    expect(rebuilt.cache.reason).toMatch(/^stale: corpus fingerprint "sha256:[0-9a-f]+" != "sha256:[0-9a-f]+"$/);
    expect(rebuilt.header.checksum).not.toBe(file.header.checksum);
    expect(gpt2.decode(rebuilt.tokens!)).toContain('Queequeg');
    expect((await prepare(path, cacheDir)).cache.hit).toBe(true);
  });

  it('when the header says another tokenizer, vocabulary or split configuration', async () => {
    const { path, cacheDir, file } = await setup();
    const original = await readFile(file.headerPath, 'utf8');
    for (const [edit, reason] of [
      [(h: Record<string, unknown>) => (h.tokenizer = 'cl100k'), 'stale: tokenizer "cl100k" != "gpt2"'],
      [(h: Record<string, unknown>) => (h.vocabSize = 50000), 'stale: vocabSize 50000 != 50257'],
      [(h: Record<string, unknown>) => (h.seed = 7), 'stale: seed 7 != 0'],
      [(h: Record<string, unknown>) => (h.split = 'test'), 'stale: split "test" != "train"'],
      [(h: Record<string, unknown>) => (h.version = 0), 'stale: format "peer-data-tokens" version 0'],
    ] as const) {
      const header = JSON.parse(original) as Record<string, unknown>;
      edit(header);
      await writeFile(file.headerPath, JSON.stringify(header));
      const rebuilt = await prepare(path, cacheDir);
      expect(rebuilt.cache).toEqual({ hit: false, reason });
      expect([...rebuilt.tokens!]).toEqual([...file.tokens!]);
    }
  });

  it('a different tokenizer or seed gets its own entry (no thrashing)', async () => {
    const { path, cacheDir } = await setup();
    await prepareTokens({ corpus: path, tokenizer: 'byte', split: 'train', cacheDir });
    await prepareTokens({ corpus: path, tokenizer: gpt2, split: 'train', cacheDir, seed: 3 });
    expect((await prepare(path, cacheDir)).cache.hit).toBe(true);
    expect((await prepareTokens({ corpus: path, tokenizer: 'byte', split: 'train', cacheDir })).cache.hit).toBe(true);
  });
});

describe('a corrupt cache entry is rebuilt, never used', () => {
  it('a flipped byte in the token file (checksum)', async () => {
    const { path, cacheDir, file } = await setup();
    const bytes = await readFile(file.path);
    bytes[bytes.length >> 1]! ^= 0x40;
    await writeFile(file.path, bytes);
    const rebuilt = await prepare(path, cacheDir);
    expect(rebuilt.cache.hit).toBe(false);
    expect(rebuilt.cache.reason).toMatch(/^corrupt: checksum sha256:[0-9a-f]+ != sha256:[0-9a-f]+$/);
    expect([...rebuilt.tokens!]).toEqual([...file.tokens!]);
  });

  it('a truncated token file (size)', async () => {
    const { path, cacheDir, file } = await setup();
    await truncate(file.path, 10);
    const rebuilt = await prepare(path, cacheDir);
    expect(rebuilt.cache).toEqual({ hit: false, reason: `corrupt: token file has 10 bytes, header says ${file.numTokens * 2}` });
    expect([...rebuilt.tokens!]).toEqual([...file.tokens!]);
  });

  it('a missing token file, or a header that is not JSON', async () => {
    const { path, cacheDir, file } = await setup();
    await unlink(file.path);
    expect((await prepare(path, cacheDir)).cache).toEqual({ hit: false, reason: 'corrupt: token file missing' });
    await writeFile(file.headerPath, '{"format": "peer-data-tok');
    expect((await prepare(path, cacheDir)).cache).toEqual({ hit: false, reason: 'corrupt: header is not JSON' });
  });

  it("verify: 'size' trades the checksum pass for speed (documented: a same-size corruption goes unnoticed)", async () => {
    const { path, cacheDir, file } = await setup();
    const bytes = await readFile(file.path);
    bytes[0]! ^= 0x01;
    await writeFile(file.path, bytes);
    const fast = await prepare(path, cacheDir, { verify: 'size' });
    expect(fast.cache.hit).toBe(true);
    expect(fast.tokens![0]).not.toBe(file.tokens![0]);
  });
});

describe('failed builds leave nothing behind', () => {
  it('a bad JSONL line: error names file and line; no header, token file or temporary file remains', async () => {
    const { path, cacheDir } = await setup();
    const lines = jsonl(docs).split('\n');
    lines.splice(70, 0, '{"text": "unterminated');
    await writeFile(path, lines.join('\n'));
    await expect(prepare(path, cacheDir)).rejects.toThrow(new RegExp(`^${path}:71: not valid JSON`));
    // The previous (now stale) entry is gone too: what is left can never be mistaken for a cache entry.
    const left = await readdir(cacheDir);
    expect(left.filter((f) => f.endsWith('.json'))).toEqual([]);
    expect(left.filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a binary corpus file: error names the file; the cache folder stays empty', async () => {
    const path = await tmp.write('binary.txt', Uint8Array.from([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00]));
    const cacheDir = await tmp.fresh();
    await expect(prepare(path, cacheDir)).rejects.toThrow(`${path}: not UTF-8 text: NUL byte (binary file?) at byte 7 (line 1)`);
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('temporary files of a killed build (dead process) are removed by the next build', async () => {
    const { path, cacheDir, file } = await setup();
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const base = file.path.replace(/\.train\.tokens$/, '');
    const orphan = `${base}.validation.tokens.tmp-${deadPid}-deadbeef`;
    const alive = `${base}.test.tokens.tmp-${process.pid}-cafe0123`;
    await writeFile(orphan, 'half written');
    await writeFile(alive, 'being written by this process');
    await writeFile(path, jsonl(docs.slice(1))); // stale: forces a build
    await prepare(path, cacheDir);
    const left = await readdir(cacheDir);
    expect(left).not.toContain(orphan.slice(cacheDir.length + 1));
    expect(left).toContain(alive.slice(cacheDir.length + 1));
    await unlink(join(alive));
  });
});
