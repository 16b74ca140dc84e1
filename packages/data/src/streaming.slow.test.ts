// A corpus much larger than what the process may hold: a generated 200 MB JSONL file is tokenized
// with memory that stays bounded (a chunk, a document, the write buffers), whatever the file size;
// the same file gzip-compressed (by the gzip tool) too.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Batcher } from './batcher.js';
import { SPLIT_NAMES } from './splits.js';
import { useTempDir } from './temp-files.test-util.js';
import { prepareTokens, type PrepareProgress } from './token-cache.js';

const tmp = useTempDir('streaming');
const MB = 1 << 20;
const TARGET_BYTES = 200 * MB;

/** Writes about `bytes` of JSONL (ASCII and 2-byte characters); returns the documents' UTF-8 bytes and count. */
async function writeLargeJsonl(path: string, bytes: number): Promise<{ textBytes: number; documents: number }> {
  const out = createWriteStream(path);
  const words = ['whale', 'sea', 'harpoon', 'café', 'naïve', 'Ahab', 'ship', 'déjà', 'deck', 'Pequod'];
  let written = 0;
  let textBytes = 0;
  let documents = 0;
  let state = 12345;
  while (written < bytes) {
    const lines: string[] = [];
    for (let i = 0; i < 500; i++) {
      const len = 50 + (state % 400);
      const parts: string[] = [];
      for (let j = 0; j < len; j++) {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        parts.push(words[state % words.length]!);
      }
      const text = `${documents}: ${parts.join(' ')}`;
      textBytes += Buffer.byteLength(text);
      documents++;
      lines.push(JSON.stringify({ text, meta: { n: documents } }));
    }
    const chunk = lines.join('\n') + '\n';
    written += Buffer.byteLength(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return { textBytes, documents };
}

let large: Promise<{ path: string; textBytes: number; documents: number }> | undefined;
const largeJsonl = () =>
  (large ??= (async () => {
    const path = join(tmp.path, 'large.jsonl');
    return { path, ...(await writeLargeJsonl(path, TARGET_BYTES)) };
  })());

describe('streaming a large JSONL corpus', () => {
  it('tokenizes 200 MB with bounded memory, counting every byte and document', async () => {
    const { path, textBytes, documents } = await largeJsonl();
    const fileBytes = (await stat(path)).size;
    expect(fileBytes).toBeGreaterThanOrEqual(TARGET_BYTES);

    const baseline = process.memoryUsage();
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed;
    const sample = (): void => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    };
    const timer = setInterval(sample, 5);
    const events: PrepareProgress[] = [];
    const cacheDir = await tmp.fresh('cache');
    let files;
    try {
      files = [];
      for (const split of SPLIT_NAMES) {
        files.push(
          await prepareTokens({
            corpus: path,
            tokenizer: 'byte',
            split,
            cacheDir,
            inMemory: false,
            onProgress: (p) => {
              events.push(p);
              sample();
            },
          }),
        );
      }
    } finally {
      clearInterval(timer);
    }
    sample();
    const rssGrowth = peakRss - baseline.rss;
    const heapGrowth = peakHeap - baseline.heapUsed;
    console.log(
      `large corpus: ${(fileBytes / MB).toFixed(0)} MB file, ${documents} documents; peak RSS growth ${(rssGrowth / MB).toFixed(1)} MB, ` +
        `peak heap growth ${(heapGrowth / MB).toFixed(1)} MB, ${events.length} progress events`,
    );
    // The file is 200 MB and the token files 400 MB: holding either would blow these bounds.
    expect(rssGrowth).toBeLessThan(100 * MB);
    expect(heapGrowth).toBeLessThan(100 * MB);

    // Bookkeeping: every document in exactly one split, every byte tokenized once.
    expect(files.reduce((a, f) => a + f.numDocuments, 0)).toBe(documents);
    expect(files.reduce((a, f) => a + f.numBytes, 0)).toBe(textBytes);
    expect(files.reduce((a, f) => a + f.numTokens, 0)).toBe(textBytes);
    expect(events.length).toBeGreaterThan(50); // about every 1% of the file
    expect(events.at(-1)).toEqual({ bytes: fileBytes, tokens: textBytes, totalBytes: fileBytes, documents });
    // Only the first request built; the others were cache hits.
    expect(files.map((f) => f.cache.hit)).toEqual([false, true, true]);
    expect((await readdir(cacheDir)).filter((f) => f.includes('.tmp-'))).toEqual([]);

    // The on-demand reader feeds the batcher straight from disk.
    const train = files[0]!;
    const batch = new Batcher(train, { batchSize: 8, seqLen: 256, seed: 1 }).next();
    const window = new Int32Array(257);
    train.read(0, 257, window, 0);
    expect(Buffer.from(Uint8Array.from(window)).toString('utf8')).toMatch(/^\d+: /);
    expect(batch.inputs.every((t) => t >= 0 && t < 256)).toBe(true);
    for (const f of files) f.close();
  });

  it('a .jsonl.gz of it: inflated as it is read, with the same bounds and the same tokens', async () => {
    const { path, textBytes, documents } = await largeJsonl();
    execFileSync('gzip', ['-1', '-n', '-k', '-f', path]);
    const gz = `${path}.gz`;
    const fileBytes = (await stat(gz)).size;
    const baseline = process.memoryUsage();
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed;
    const sample = (): void => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    };
    const timer = setInterval(sample, 5);
    const cacheDir = await tmp.fresh('cache-gz');
    const events: PrepareProgress[] = [];
    let files;
    try {
      files = [];
      for (const split of SPLIT_NAMES) {
        files.push(await prepareTokens({ corpus: gz, tokenizer: 'byte', split, cacheDir, inMemory: false, onProgress: (p) => (events.push(p), sample()) }));
      }
    } finally {
      clearInterval(timer);
    }
    sample();
    const rssGrowth = peakRss - baseline.rss;
    const heapGrowth = peakHeap - baseline.heapUsed;
    console.log(
      `large corpus, gzip: ${(fileBytes / MB).toFixed(0)} MB compressed; peak RSS growth ${(rssGrowth / MB).toFixed(1)} MB, ` +
        `peak heap growth ${(heapGrowth / MB).toFixed(1)} MB`,
    );
    // Holding the 200 MB of text (or the compressed file, or the 400 MB of tokens) would blow these.
    expect(rssGrowth).toBeLessThan(100 * MB);
    expect(heapGrowth).toBeLessThan(100 * MB);
    expect(files.reduce((a, f) => a + f.numDocuments, 0)).toBe(documents);
    expect(files.reduce((a, f) => a + f.numTokens, 0)).toBe(textBytes);
    // Progress counts compressed bytes.
    expect(events.at(-1)!.totalBytes).toBe(fileBytes);
    expect(events.at(-1)!.bytes).toBe(fileBytes);
    for (const f of files) f.close();
  });
});
