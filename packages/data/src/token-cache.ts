// Tokenize a corpus once and keep the result on disk: per split, a raw little-endian token file
// (`<base>.<split>.tokens`, uint16 or uint32) beside a JSON header (`<base>.<split>.json`) that says
// what produced it. A header that does not match the request (other corpus content, tokenizer,
// seed, fractions) or a token file that does not match its header (size, SHA-256) is rebuilt, never
// used. Files are written under temporary names and renamed into place, header last, so an
// interrupted or failed build leaves nothing that could be mistaken for a cache entry.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCorpus, type Corpus, type CorpusOptions } from './corpus.js';
import { DataError } from './errors.js';
import { sha256File } from './file-hash.js';
import { assignSplit, checkFractions, checkSeed, checkSplitName, SPLIT_NAMES, type SplitFractions, type SplitName } from './splits.js';
import { resolveTokenizer, type Tokenizer, type TokenizerName, type TokenizerSpec } from './tokenizer.js';
import {
  arrayTokenSource,
  assertLittleEndian,
  BYTES_PER_TOKEN,
  dtypeForVocab,
  TokenFileReader,
  type TokenDtype,
  type TokenSource,
} from './token-source.js';

export const TOKEN_FILE_FORMAT = 'peer-data-tokens';
export const TOKEN_FILE_VERSION = 1;

export interface TokenFileHeader {
  format: typeof TOKEN_FILE_FORMAT;
  version: typeof TOKEN_FILE_VERSION;
  tokenizer: TokenizerName;
  vocabSize: number;
  /** Id written after every document, or null (byte tokenizer: documents are simply concatenated). */
  endOfText: number | null;
  dtype: TokenDtype;
  byteOrder: 'little-endian';
  corpus: { name: string; kind: string; source: string; fingerprint: string; byteSize: number; numDocuments: number };
  split: SplitName;
  seed: number;
  fractions: SplitFractions;
  /** Documents of this split. */
  numDocuments: number;
  numTokens: number;
  /** UTF-8 bytes of this split's documents: the denominator of bits-per-byte. */
  numBytes: number;
  /** `sha256:<hex>` of the token file. */
  checksum: string;
}

export interface PrepareProgress {
  /** Corpus bytes read so far (file bytes for path corpora). */
  bytes: number;
  /** Tokens written so far, all splits together. */
  tokens: number;
  totalBytes: number;
  documents: number;
}

export interface PrepareTokensOptions {
  /** A loaded corpus, or a spec for `loadCorpus` (`sotu`, `moby-dick`, a path). */
  corpus: Corpus | string;
  /** Options for `loadCorpus` when `corpus` is a spec. */
  corpusOptions?: CorpusOptions;
  tokenizer: Tokenizer | TokenizerSpec;
  split: SplitName;
  cacheDir: string;
  /** Seed of the document split (default 0). */
  seed?: number;
  /** Default `{ train: 0.9, validation: 0.05, test: 0.05 }`. */
  fractions?: Partial<SplitFractions>;
  /** Called while tokenizing (about every 1% of the corpus, and once at the end). */
  onProgress?: (progress: PrepareProgress) => void;
  /** Load the tokens into memory: `auto` (default) when the file is at most `maxInMemoryBytes`. */
  inMemory?: boolean | 'auto';
  /** Default 1 GiB. */
  maxInMemoryBytes?: number;
  /** `checksum` (default) hashes the token file on every load; `size` only compares its length. */
  verify?: 'checksum' | 'size';
}

export interface TokenFile extends TokenSource {
  /** The tokens, when loaded into memory; null for a file read on demand (see `inMemory`). */
  readonly tokens: Uint16Array | Uint32Array | null;
  readonly numTokens: number;
  readonly numBytes: number;
  readonly numDocuments: number;
  readonly header: TokenFileHeader;
  readonly path: string;
  readonly headerPath: string;
  /** How the cache was used: a hit, or built (and why: missing, stale, corrupt). */
  readonly cache: { hit: boolean; reason: string };
  /** Releases the file handle of an on-demand reader (no-op in memory). */
  close(): void;
}

const WRITE_BUFFER_TOKENS = 1 << 18;

/** Turns a name into something safe in a file name. */
function slug(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60) || 'corpus';
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** File names (without split and extension) of the cache entry for a corpus, tokenizer, seed and fractions. */
export function cacheBaseName(corpus: Pick<Corpus, 'name' | 'source'>, tokenizer: TokenizerName, seed: number, fractions: SplitFractions): string {
  const key = shortHash(JSON.stringify({ v: TOKEN_FILE_VERSION, source: corpus.source, seed, fractions }));
  return `${slug(corpus.name)}.${tokenizer}.${key}`;
}

export function cachePaths(cacheDir: string, base: string, split: SplitName): { tokens: string; header: string } {
  return { tokens: join(cacheDir, `${base}.${split}.tokens`), header: join(cacheDir, `${base}.${split}.json`) };
}

// One build per cache entry at a time within this process (e.g. train and validation requested together).
const buildsInFlight = new Map<string, Promise<void>>();

/**
 * The token file of one split of a corpus, from the cache when a valid entry exists, else built (all
 * splits in one streaming pass, so that asking for the next split is a cache hit).
 */
export async function prepareTokens(options: PrepareTokensOptions): Promise<TokenFile> {
  assertLittleEndian();
  const split = checkSplitName(options.split);
  const seed = checkSeed(options.seed ?? 0);
  const fractions = checkFractions(options.fractions);
  const tokenizer = resolveTokenizer(options.tokenizer);
  if (typeof options.cacheDir !== 'string' || options.cacheDir.length === 0) {
    throw new DataError(`cacheDir must be a folder path, got ${JSON.stringify(options.cacheDir)}`);
  }
  const maxInMemoryBytes = options.maxInMemoryBytes ?? 2 ** 30;
  const corpus = typeof options.corpus === 'string' ? await loadCorpus(options.corpus, options.corpusOptions) : options.corpus;
  const fingerprint = await corpus.fingerprint();
  const base = cacheBaseName(corpus, tokenizer.name, seed, fractions);
  const expected = {
    tokenizer: tokenizer.name,
    vocabSize: tokenizer.vocabSize,
    endOfText: tokenizer.endOfText,
    dtype: dtypeForVocab(tokenizer.vocabSize),
    fingerprint,
    split,
    seed,
    fractions,
  };
  const paths = cachePaths(options.cacheDir, base, split);
  const use = (cache: TokenFile['cache']): Promise<{ file?: TokenFile; reason: string }> =>
    openCacheEntry(paths, expected, { inMemory: options.inMemory ?? 'auto', maxInMemoryBytes, verify: options.verify ?? 'checksum', cache });

  const first = await use({ hit: true, reason: 'valid cache entry' });
  if (first.file) return finish(first.file, corpus);

  const key = join(options.cacheDir, base);
  for (;;) {
    const running = buildsInFlight.get(key);
    if (!running) break;
    await running.catch(() => undefined);
    const again = await use({ hit: true, reason: 'built by a concurrent request' });
    if (again.file) return finish(again.file, corpus);
  }
  const build = buildAllSplits(corpus, fingerprint, tokenizer, seed, fractions, options.cacheDir, base, options.onProgress);
  buildsInFlight.set(key, build);
  try {
    await build;
  } finally {
    buildsInFlight.delete(key);
  }
  const built = await use({ hit: false, reason: first.reason });
  if (!built.file) throw new Error(`internal: freshly built cache entry failed its check (${built.reason})`);
  return finish(built.file, corpus);
}

function finish(file: TokenFile, corpus: Corpus): TokenFile {
  if (file.numTokens === 0) {
    file.close();
    const h = file.header;
    throw new DataError(
      `split "${h.split}" of corpus ${corpus.name} is empty: none of its ${h.corpus.numDocuments} documents fell in it ` +
        `(fractions ${JSON.stringify(h.fractions)}, seed ${h.seed}); use more documents, a larger fraction or another seed`,
      { file: corpus.source },
    );
  }
  return file;
}

interface Expected {
  tokenizer: TokenizerName;
  vocabSize: number;
  endOfText: number | null;
  dtype: TokenDtype;
  fingerprint: string;
  split: SplitName;
  seed: number;
  fractions: SplitFractions;
}

/**
 * Reads a cache entry's header and checks it against the request and the token file's size; `header`
 * is set only when those match (the checksum is checked while the tokens are read, see openCacheEntry).
 */
async function checkHeader(
  paths: { tokens: string; header: string },
  expected: Expected,
): Promise<{ header?: TokenFileHeader; reason: string }> {
  let text: string;
  try {
    text = await readFile(paths.header, 'utf8');
  } catch {
    return { reason: 'missing: no cache entry' };
  }
  let header: TokenFileHeader;
  try {
    header = JSON.parse(text) as TokenFileHeader;
  } catch {
    return { reason: 'corrupt: header is not JSON' };
  }
  if (header?.format !== TOKEN_FILE_FORMAT || header.version !== TOKEN_FILE_VERSION) {
    return { reason: `stale: format ${JSON.stringify(header?.format)} version ${JSON.stringify(header?.version)}` };
  }
  const mismatches: string[] = [];
  const compare = (field: string, actual: unknown, wanted: unknown): void => {
    if (JSON.stringify(actual) !== JSON.stringify(wanted)) {
      mismatches.push(`${field} ${JSON.stringify(actual)} != ${JSON.stringify(wanted)}`);
    }
  };
  compare('tokenizer', header.tokenizer, expected.tokenizer);
  compare('vocabSize', header.vocabSize, expected.vocabSize);
  compare('endOfText', header.endOfText, expected.endOfText);
  compare('dtype', header.dtype, expected.dtype);
  compare('corpus fingerprint', header.corpus?.fingerprint, expected.fingerprint);
  compare('split', header.split, expected.split);
  compare('seed', header.seed, expected.seed);
  compare('fractions', header.fractions, expected.fractions);
  if (mismatches.length > 0) return { reason: `stale: ${mismatches.join('; ')}` };
  if (!Number.isSafeInteger(header.numTokens) || header.numTokens < 0) {
    return { reason: `corrupt: numTokens ${JSON.stringify(header.numTokens)}` };
  }
  let size: number;
  try {
    size = (await stat(paths.tokens)).size;
  } catch {
    return { reason: 'corrupt: token file missing' };
  }
  const wantedSize = header.numTokens * BYTES_PER_TOKEN[header.dtype];
  if (size !== wantedSize) return { reason: `corrupt: token file has ${size} bytes, header says ${wantedSize}` };
  return { header, reason: 'valid' };
}

interface OpenOptions {
  inMemory: boolean | 'auto';
  maxInMemoryBytes: number;
  verify: 'checksum' | 'size';
  /** What to report in TokenFile.cache when the entry is usable. */
  cache: TokenFile['cache'];
}

/**
 * A usable TokenFile for a cache entry, or the reason it is not usable. The checksum is computed in
 * the same pass that loads the tokens (or, for on-demand files, in one pass over the file).
 */
async function openCacheEntry(
  paths: { tokens: string; header: string },
  expected: Expected,
  options: OpenOptions,
): Promise<{ file?: TokenFile; reason: string }> {
  const { header, reason } = await checkHeader(paths, expected);
  if (!header) return { reason };
  const bytes = header.numTokens * BYTES_PER_TOKEN[header.dtype];
  const loadIt = options.inMemory === 'auto' ? bytes <= options.maxInMemoryBytes : options.inMemory;
  const common = {
    numTokens: header.numTokens,
    numBytes: header.numBytes,
    numDocuments: header.numDocuments,
    header,
    path: paths.tokens,
    headerPath: paths.header,
    label: paths.tokens,
    cache: options.cache,
  };
  const checksumMismatch = (actual: string): { reason: string } => ({
    reason: `corrupt: checksum ${actual} != ${header.checksum}`,
  });
  if (!loadIt) {
    if (options.verify === 'checksum') {
      const actual = `sha256:${await sha256File(paths.tokens)}`;
      if (actual !== header.checksum) return checksumMismatch(actual);
    }
    const reader = new TokenFileReader(paths.tokens, header.dtype, header.numTokens);
    return { file: { ...common, tokens: null, read: reader.read.bind(reader), close: () => reader.close() }, reason: 'valid' };
  }
  const raw = new Uint8Array(bytes);
  const hash = createHash('sha256');
  const handle = await open(paths.tokens, 'r');
  try {
    let got = 0;
    while (got < bytes) {
      const { bytesRead } = await handle.read(raw, got, Math.min(bytes - got, 1 << 24), got);
      if (bytesRead === 0) return { reason: 'corrupt: token file shrank while loading' };
      if (options.verify === 'checksum') hash.update(raw.subarray(got, got + bytesRead));
      got += bytesRead;
    }
  } finally {
    await handle.close();
  }
  if (options.verify === 'checksum') {
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== header.checksum) return checksumMismatch(actual);
  }
  const tokens = header.dtype === 'uint16' ? new Uint16Array(raw.buffer) : new Uint32Array(raw.buffer);
  const source = arrayTokenSource(tokens, paths.tokens);
  return { file: { ...common, tokens, read: source.read, close: () => undefined }, reason: 'valid' };
}

/** One split's output while building: a buffered writer to a temporary file, with running counts. */
class SplitWriter {
  numDocuments = 0;
  numTokens = 0;
  numBytes = 0;
  private readonly hash = createHash('sha256');
  private readonly buffer: Uint16Array | Uint32Array;
  private fill = 0;

  private constructor(
    readonly split: SplitName,
    readonly tempPath: string,
    private readonly handle: Awaited<ReturnType<typeof open>>,
    dtype: TokenDtype,
    private readonly vocabSize: number,
  ) {
    this.buffer = dtype === 'uint16' ? new Uint16Array(WRITE_BUFFER_TOKENS) : new Uint32Array(WRITE_BUFFER_TOKENS);
  }

  static async create(split: SplitName, finalPath: string, dtype: TokenDtype, vocabSize: number): Promise<SplitWriter> {
    const tempPath = `${finalPath}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    return new SplitWriter(split, tempPath, await open(tempPath, 'wx'), dtype, vocabSize);
  }

  async push(ids: ArrayLike<number>): Promise<void> {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!(id >= 0 && id < this.vocabSize)) {
        throw new Error(`internal: tokenizer produced id ${id} outside [0, ${this.vocabSize})`);
      }
      this.buffer[this.fill++] = id;
      if (this.fill === this.buffer.length) await this.flush();
    }
    this.numTokens += ids.length;
  }

  async flush(): Promise<void> {
    if (this.fill === 0) return;
    const bytes = new Uint8Array(this.buffer.buffer, 0, this.fill * this.buffer.BYTES_PER_ELEMENT);
    this.hash.update(bytes);
    let written = 0;
    while (written < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, written, bytes.length - written);
      written += bytesWritten;
    }
    this.fill = 0;
  }

  /** Flushes, syncs and closes; returns the checksum. */
  async finish(): Promise<string> {
    await this.flush();
    await this.handle.sync();
    await this.handle.close();
    return `sha256:${this.hash.digest('hex')}`;
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
  }
}

/** Removes temporary files of this cache entry left by processes that no longer run (killed mid-build). */
async function removeOrphanTemps(cacheDir: string, base: string): Promise<void> {
  const pattern = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\..*\\.tmp-(\\d+)-[0-9a-f]+$`);
  for (const name of await readdir(cacheDir)) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) await unlink(join(cacheDir, name)).catch(() => undefined);
  }
}

async function buildAllSplits(
  corpus: Corpus,
  fingerprint: string,
  tokenizer: Tokenizer,
  seed: number,
  fractions: SplitFractions,
  cacheDir: string,
  base: string,
  onProgress: PrepareTokensOptions['onProgress'],
): Promise<void> {
  await mkdir(cacheDir, { recursive: true });
  await removeOrphanTemps(cacheDir, base);
  const dtype = dtypeForVocab(tokenizer.vocabSize);
  const splits = SPLIT_NAMES.filter((s) => fractions[s] > 0);
  // Old headers go first: whatever happens below, no header describes files being replaced.
  for (const s of SPLIT_NAMES) await unlink(cachePaths(cacheDir, base, s).header).catch(() => undefined);

  const writers = new Map<SplitName, SplitWriter>();
  const temps: string[] = [];
  // Token files renamed into place whose header is not written yet: removed if the commit fails.
  const uncommitted = new Set<string>();
  try {
    for (const s of splits) {
      const writer = await SplitWriter.create(s, cachePaths(cacheDir, base, s).tokens, dtype, tokenizer.vocabSize);
      writers.set(s, writer);
      temps.push(writer.tempPath);
    }
    const eot = tokenizer.endOfText === null ? null : [tokenizer.endOfText];
    let documents = 0;
    let tokens = 0;
    let bytes = 0;
    let reported = 0;
    const step = Math.max(1 << 20, Math.floor(corpus.byteSize / 100));
    for await (const doc of corpus.documents()) {
      const writer = writers.get(assignSplit(doc.text, seed, fractions))!;
      const ids = tokenizer.encode(doc.text);
      await writer.push(ids);
      if (eot) await writer.push(eot);
      writer.numDocuments++;
      writer.numBytes += Buffer.byteLength(doc.text, 'utf8');
      documents++;
      tokens += ids.length + (eot ? 1 : 0);
      bytes = doc.position;
      if (onProgress && bytes - reported >= step) {
        reported = bytes;
        onProgress({ bytes, tokens, totalBytes: corpus.byteSize, documents });
      }
    }
    if (documents === 0) {
      throw new DataError('empty corpus: no documents with text', { file: corpus.source });
    }
    onProgress?.({ bytes: corpus.byteSize, tokens, totalBytes: corpus.byteSize, documents });

    const headers: [SplitName, TokenFileHeader, string][] = [];
    for (const s of SPLIT_NAMES) {
      const writer = writers.get(s);
      const checksum = writer ? await writer.finish() : `sha256:${createHash('sha256').digest('hex')}`;
      if (!writer) {
        // A split with fraction 0 still gets a (0-token) entry, so that asking for it says "empty".
        const tempPath = `${cachePaths(cacheDir, base, s).tokens}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
        temps.push(tempPath);
        await writeFile(tempPath, new Uint8Array(0));
      }
      headers.push([
        s,
        {
          format: TOKEN_FILE_FORMAT,
          version: TOKEN_FILE_VERSION,
          tokenizer: tokenizer.name,
          vocabSize: tokenizer.vocabSize,
          endOfText: tokenizer.endOfText,
          dtype,
          byteOrder: 'little-endian',
          corpus: {
            name: corpus.name,
            kind: corpus.kind,
            source: corpus.source,
            fingerprint,
            byteSize: corpus.byteSize,
            numDocuments: documents,
          },
          split: s,
          seed,
          fractions,
          numDocuments: writer?.numDocuments ?? 0,
          numTokens: writer?.numTokens ?? 0,
          numBytes: writer?.numBytes ?? 0,
          checksum,
        },
        writer?.tempPath ?? temps[temps.length - 1]!,
      ]);
    }
    // Commit: token files into place, then each header (the header is what makes an entry valid).
    for (const [s, header, tempPath] of headers) {
      const paths = cachePaths(cacheDir, base, s);
      await rename(tempPath, paths.tokens);
      uncommitted.add(paths.tokens);
      const headerTemp = `${paths.header}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      temps.push(headerTemp);
      await writeFile(headerTemp, `${JSON.stringify(header, null, 2)}\n`, { flag: 'wx' });
      await rename(headerTemp, paths.header);
      uncommitted.delete(paths.tokens);
    }
  } catch (err) {
    for (const writer of writers.values()) await writer.abort();
    for (const temp of [...temps, ...uncommitted]) await unlink(temp).catch(() => undefined);
    throw err;
  }
}
