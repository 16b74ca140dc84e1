// A corpus is a deterministic sequence of documents plus what identifies its content (the
// fingerprint). Documents are the unit of splitting: each lands in exactly one of train / validation /
// test. Path corpora are streamed (gzip inflated on the fly, Parquet one row group at a time), so a
// corpus larger than memory costs one document (or one row group) at a time.
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { BUILTIN_CORPORA, loadBuiltinCorpus, type BuiltinCorpusName } from './builtin-corpora.js';
import { DataError } from './errors.js';
import { sha256File } from './file-hash.js';
import { readParquetColumn } from './parquet-reader.js';
import { readLines, readSections, readTextChunks } from './text-reader.js';

export type CorpusKind = 'builtin' | 'text' | 'folder' | 'jsonl' | 'parquet' | 'glob';

export interface CorpusDocument {
  /**
   * Stable, human-readable: `1790_george_washington_n`, `chapter_1`, `notes/a.txt`, `data.jsonl:17`
   * (line), `data.parquet:17` (row), `en/c4-train.00000-of-01024.json.gz:17` (a shard of a folder or glob).
   */
  id: string;
  /** Well-formed Unicode (lone surrogates from JSON escapes become U+FFFD). Never empty. */
  text: string;
  /** Bytes of the corpus source consumed so far (for progress; ends at `byteSize`). */
  position: number;
}

export interface Corpus {
  /** `sotu`, `moby-dick`, the file/folder name for a path, or the pattern for a glob. */
  readonly name: string;
  readonly kind: CorpusKind;
  /** `package@version` for built-in corpora, else the absolute path (or pattern). */
  readonly source: string;
  /** Bytes read to produce the documents: file sizes (compressed, for `.gz`), or the texts' UTF-8 bytes for built-ins. */
  readonly byteSize: number;
  /** The options that shape the documents (part of the fingerprint). */
  readonly options: Readonly<Required<CorpusOptions>>;
  /** `sha256:<hex>` over the content (or file stats, with `fingerprint: 'stat'`) and the options. */
  fingerprint(): Promise<string>;
  /** A fresh pass over the documents, in a fixed order. */
  documents(): AsyncIterable<CorpusDocument>;
  [Symbol.asyncIterator](): AsyncIterator<CorpusDocument>;
}

export interface CorpusOptions {
  /**
   * `content` (default) hashes every byte: a changed file is always noticed, at the cost of one read
   * of the corpus per run. `stat` hashes paths, sizes and modification times only: instant for
   * multi-GB corpora, but blind to an edit that keeps size and mtime.
   */
  fingerprint?: 'content' | 'stat';
  /** JSONL: the field holding the document text; Parquet: the column (default `text`). */
  textField?: string;
  /** Plain text file: cut into documents at blank lines once a document has this many characters (default 8192). */
  sectionChars?: number;
  /** Plain text file: hard cap of a document without blank lines, cut at a newline (default 1 Mi characters). */
  maxSectionChars?: number;
  /** Folder text files and JSONL lines larger than this are refused (default 64 MiB / 64 Mi characters). */
  maxDocumentBytes?: number;
}

export const TEXT_EXTENSIONS: readonly string[] = ['.txt', '.text', '.md'];
const JSONL_EXTENSIONS = ['.jsonl', '.ndjson'];

/** How a file's bytes become documents. */
export type FileFormat = 'text' | 'jsonl' | 'parquet';

/**
 * The format of a corpus file by its name: `.parquet` is Parquet; `.jsonl` / `.ndjson` are JSONL,
 * and so is `.json.gz` (C4's shards); anything else is plain text. A `.gz` suffix (gzip) is read
 * through, so `a.jsonl.gz` is JSONL and `a.txt.gz` plain text.
 */
export function corpusFileFormat(path: string): FileFormat {
  const name = basename(path).toLowerCase();
  const gzip = name.endsWith('.gz');
  const ext = extname(gzip ? name.slice(0, -3) : name);
  if (ext === '.parquet') return 'parquet';
  if (JSONL_EXTENSIONS.includes(ext) || (gzip && ext === '.json')) return 'jsonl';
  return 'text';
}

/** Folder members that are one document each (plain or gzip). */
function isFolderTextFile(name: string): boolean {
  const lower = name.toLowerCase();
  return TEXT_EXTENSIONS.includes(extname(lower.endsWith('.gz') ? lower.slice(0, -3) : lower));
}

/** Folder members that are read like a file given by its own path (JSONL lines, Parquet rows). */
function isFolderShard(name: string): boolean {
  const lower = name.toLowerCase();
  if (lower.endsWith('.parquet.gz')) return false;
  return !isFolderTextFile(name) && corpusFileFormat(lower) !== 'text';
}

const DEFAULT_OPTIONS: Required<CorpusOptions> = {
  fingerprint: 'content',
  textField: 'text',
  sectionChars: 8192,
  maxSectionChars: 1 << 20,
  maxDocumentBytes: 64 << 20,
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The string with every lone surrogate replaced by U+FFFD (what TextEncoder writes for it). */
export function toWellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

function checkOptions(options: CorpusOptions): Required<CorpusOptions> {
  const merged = { ...DEFAULT_OPTIONS, ...options };
  const positiveInt = (key: keyof CorpusOptions, min: number): void => {
    const value = merged[key] as number;
    if (!Number.isInteger(value) || value < min) {
      throw new DataError(`corpus option ${key} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
    }
  };
  positiveInt('sectionChars', 1);
  positiveInt('maxSectionChars', 2);
  positiveInt('maxDocumentBytes', 1);
  if (merged.maxSectionChars < merged.sectionChars) {
    throw new DataError(
      `corpus option maxSectionChars (${merged.maxSectionChars}) must be >= sectionChars (${merged.sectionChars})`,
    );
  }
  if (merged.fingerprint !== 'content' && merged.fingerprint !== 'stat') {
    throw new DataError(`corpus option fingerprint must be 'content' or 'stat', got ${JSON.stringify(merged.fingerprint)}`);
  }
  if (typeof merged.textField !== 'string' || merged.textField.length === 0) {
    throw new DataError(`corpus option textField must be a non-empty string, got ${JSON.stringify(merged.textField)}`);
  }
  return merged;
}

/**
 * A corpus by name (`sotu`, `moby-dick`) or by path; files ending in `.gz` are gzip-decompressed as
 * they are read:
 * - a `.jsonl` / `.ndjson` / `.json.gz` file: one document per non-blank line, from its `text` field;
 * - a `.parquet` file: one document per row, from its `text` column;
 * - a folder: one document per `.txt` / `.text` / `.md` file below it (plain or `.gz`), and the
 *   documents of every JSONL and Parquet file below it (shards), in sorted path order (hidden
 *   entries skipped);
 * - a glob (`c4/en/c4-train.0000*-of-01024.json.gz`, when no file has that literal name): the
 *   matching files in sorted path order, each read as if given by its own path;
 * - any other file: plain UTF-8 text, cut at blank lines into documents of about `sectionChars`
 *   characters (consecutive slices that together are the whole file).
 */
export async function loadCorpus(spec: string, options: CorpusOptions = {}): Promise<Corpus> {
  if (typeof spec !== 'string' || spec.length === 0) {
    throw new DataError(`corpus must be ${BUILTIN_CORPORA.join(', ')} or a path, got ${JSON.stringify(spec)}`);
  }
  const opts = checkOptions(options);
  if ((BUILTIN_CORPORA as readonly string[]).includes(spec)) return builtinCorpus(spec as BuiltinCorpusName, opts);
  const path = resolve(spec);
  let info;
  try {
    info = await stat(path);
  } catch {
    if (isDynamicPattern(spec)) return globCorpus(spec, opts);
    throw new DataError(
      `corpus not found: ${JSON.stringify(spec)} is neither a built-in corpus (${BUILTIN_CORPORA.join(', ')}) nor an existing file or folder`,
      { file: path },
    );
  }
  if (info.isDirectory()) return folderCorpus(path, opts);
  if (!info.isFile()) throw new DataError('corpus path is neither a file nor a folder', { file: path });
  if (info.size === 0) throw new DataError('empty corpus: the file has 0 bytes', { file: path });
  if (path.toLowerCase().endsWith('.parquet.gz')) {
    throw new DataError('gzip-compressed Parquet is not read: Parquet compresses its pages itself; decompress the file', { file: path });
  }
  return fileCorpus(path, corpusFileFormat(path), info.size, info.mtimeMs, opts);
}

function withIterator(corpus: Omit<Corpus, typeof Symbol.asyncIterator>): Corpus {
  return { ...corpus, [Symbol.asyncIterator]: () => corpus.documents()[Symbol.asyncIterator]() };
}

function sha256Hex(hash: ReturnType<typeof createHash>): string {
  return `sha256:${hash.digest('hex')}`;
}

async function builtinCorpus(name: BuiltinCorpusName, options: Required<CorpusOptions>): Promise<Corpus> {
  const { source, documents } = await loadBuiltinCorpus(name);
  const sizes = documents.map((d) => Buffer.byteLength(d.text, 'utf8'));
  const byteSize = sizes.reduce((a, b) => a + b, 0);
  let fingerprint: string | undefined;
  return withIterator({
    name,
    kind: 'builtin',
    source,
    byteSize,
    options,
    async fingerprint() {
      if (fingerprint === undefined) {
        // The texts are in memory and small (11 MB): always hash the content.
        const hash = createHash('sha256').update(`peer-data corpus v1\0builtin\0${name}\0`);
        documents.forEach((d, i) => hash.update(`${d.id}\0${sizes[i]}\0`).update(d.text, 'utf8'));
        fingerprint = sha256Hex(hash);
      }
      return fingerprint;
    },
    async *documents() {
      let position = 0;
      for (let i = 0; i < documents.length; i++) {
        position += sizes[i]!;
        if (documents[i]!.text.length > 0) yield { id: documents[i]!.id, text: documents[i]!.text, position };
      }
    },
  });
}

interface FileEntry {
  path: string;
  /** Posix-style path relative to the corpus root (the file name for single-file corpora). */
  rel: string;
  size: number;
  mtimeMs: number;
  /** `document`: the whole file is one document (folder text files); else the file's own format. */
  read: 'document' | FileFormat;
}

function pathFingerprint(kind: CorpusKind, files: FileEntry[], options: Required<CorpusOptions>): () => Promise<string> {
  // Only the options that change the documents; fingerprint mode and size caps do not. The shapes of
  // single files and text-only folders are those of earlier versions, so their caches stay valid.
  const reads = new Set(files.map((f) => f.read));
  const sections = { sectionChars: options.sectionChars, maxSectionChars: options.maxSectionChars };
  const field = { textField: options.textField };
  const shape =
    kind === 'text'
      ? sections
      : kind === 'jsonl' || kind === 'parquet'
        ? field
        : kind === 'folder'
          ? { extensions: TEXT_EXTENSIONS, ...(reads.has('jsonl') || reads.has('parquet') ? field : {}) }
          : { ...(reads.has('text') ? sections : {}), ...(reads.has('jsonl') || reads.has('parquet') ? field : {}) };
  let cached: string | undefined;
  return async () => {
    if (cached !== undefined) return cached;
    const hash = createHash('sha256').update(`peer-data corpus v1\0${kind}\0${JSON.stringify(shape)}\0`);
    for (const file of files) {
      const content = options.fingerprint === 'stat' ? `mtime:${file.mtimeMs}` : await sha256File(file.path);
      hash.update(`${file.rel}\0${file.size}\0${content}\0`);
    }
    cached = sha256Hex(hash);
    return cached;
  };
}

function fileCorpus(path: string, kind: FileFormat, size: number, mtimeMs: number, options: Required<CorpusOptions>): Corpus {
  const name = basename(path);
  const files: FileEntry[] = [{ path, rel: name, size, mtimeMs, read: kind }];
  return withIterator({
    name,
    kind,
    source: path,
    byteSize: size,
    options,
    fingerprint: pathFingerprint(kind, files, options),
    documents: () => filesDocuments(files, options),
  });
}

/** The documents of `files` in order; positions count the bytes of all files before each one. */
async function* filesDocuments(files: readonly FileEntry[], options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  let before = 0;
  for (const file of files) {
    for await (const doc of fileDocuments(file, options)) yield { ...doc, position: before + doc.position };
    before += file.size;
  }
}

function fileDocuments(file: FileEntry, options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  switch (file.read) {
    case 'document':
      return wholeFileDocument(file, options);
    case 'jsonl':
      return jsonlDocuments(file.path, file.rel, options);
    case 'parquet':
      return parquetDocuments(file.path, file.rel, options);
    case 'text':
      return sectionDocuments(file.path, file.rel, options);
  }
}

async function* sectionDocuments(path: string, name: string, options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  for await (const section of readSections(path, options.sectionChars, options.maxSectionChars)) {
    yield { id: `${name}:${section.line}`, text: section.text, position: section.position };
  }
}

async function* jsonlDocuments(path: string, name: string, options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  const field = options.textField;
  for await (const line of readLines(path, options.maxDocumentBytes)) {
    if (line.text.trim().length === 0) continue;
    let record: unknown;
    try {
      record = JSON.parse(line.text);
    } catch (err) {
      throw new DataError(`not valid JSON (${(err as Error).message}): ${preview(line.text)}`, { file: path, line: line.number });
    }
    const text = (record as Record<string, unknown> | null)?.[field];
    if (typeof record !== 'object' || record === null || Array.isArray(record) || typeof text !== 'string') {
      throw new DataError(
        `expected a JSON object with a string field ${JSON.stringify(field)}, got ${preview(line.text)}`,
        { file: path, line: line.number },
      );
    }
    if (text.length > 0) yield { id: `${name}:${line.number}`, text: toWellFormed(text), position: line.position };
  }
}

async function* parquetDocuments(path: string, name: string, options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  for await (const cell of readParquetColumn(path, options.textField)) {
    if (cell.text.length > options.maxDocumentBytes) {
      throw new DataError(`text of ${cell.text.length} characters is over maxDocumentBytes (${options.maxDocumentBytes})`, {
        file: path,
        row: cell.row,
      });
    }
    if (cell.text.length > 0) yield { id: `${name}:${cell.row}`, text: toWellFormed(cell.text), position: cell.position };
  }
}

async function* wholeFileDocument(file: FileEntry, options: Required<CorpusOptions>): AsyncGenerator<CorpusDocument> {
  const tooLarge = (bytes: number): DataError =>
    new DataError(
      `file of ${bytes} bytes${file.path.toLowerCase().endsWith('.gz') ? ' (decompressed)' : ''} is over maxDocumentBytes (${options.maxDocumentBytes}): one folder file is one document; address a large file by its own path (it is then cut into sections)`,
      { file: file.path },
    );
  if (file.size > options.maxDocumentBytes) throw tooLarge(file.size);
  let text = '';
  let bytes = 0;
  for await (const chunk of readTextChunks(file.path)) {
    text += chunk.text;
    // A compressed file's size says little about its text: count as it inflates.
    bytes += Buffer.byteLength(chunk.text, 'utf8');
    if (bytes > options.maxDocumentBytes) throw tooLarge(bytes);
  }
  if (text.length > 0) yield { id: file.rel, text, position: file.size };
}

function preview(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

function byPath(a: FileEntry, b: FileEntry): number {
  // Code-unit order, not locale order: the same on every machine.
  return a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0;
}

async function listFolderFiles(root: string): Promise<FileEntry[]> {
  const out: FileEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const read = isFolderTextFile(entry.name) ? 'document' : isFolderShard(entry.name) ? corpusFileFormat(entry.name) : undefined;
        if (read === undefined) continue;
        const info = await stat(path);
        out.push({ path, rel: relative(root, path).split(sep).join('/'), size: info.size, mtimeMs: info.mtimeMs, read });
      }
    }
  };
  await walk(root);
  return out.sort(byPath);
}

async function folderCorpus(root: string, options: Required<CorpusOptions>): Promise<Corpus> {
  const files = await listFolderFiles(root);
  if (files.length === 0) {
    throw new DataError(
      `empty corpus: no ${TEXT_EXTENSIONS.join(' / ')} files in the folder (plain or .gz), nor .jsonl / .ndjson / .json.gz / .parquet shards`,
      { file: root },
    );
  }
  const byteSize = files.reduce((a, f) => a + f.size, 0);
  if (byteSize === 0) throw new DataError('empty corpus: all text files in the folder have 0 bytes', { file: root });
  return withIterator({
    name: basename(root),
    kind: 'folder',
    source: root,
    byteSize,
    options,
    fingerprint: pathFingerprint('folder', files, options),
    documents: () => filesDocuments(files, options),
  });
}

/** The leading path segments without glob syntax (the folder to search) and the rest (the pattern). */
function splitPattern(spec: string): { base: string; pattern: string } {
  // On POSIX a backslash escapes glob syntax; only Windows separates paths with it.
  const parts = spec.split(sep === '/' ? '/' : /[\\/]/);
  let i = 0;
  while (i < parts.length - 1 && !isDynamicPattern(parts[i]!)) i++;
  const head = parts.slice(0, i).join('/');
  return { base: resolve(head === '' && isAbsolute(spec) ? '/' : head || '.'), pattern: parts.slice(i).join('/') };
}

async function globCorpus(spec: string, options: Required<CorpusOptions>): Promise<Corpus> {
  const { base, pattern } = splitPattern(spec);
  const source = `${base}/${pattern}`;
  const matches = await glob(pattern, { cwd: base, onlyFiles: true, dot: false, expandDirectories: false });
  const files: FileEntry[] = [];
  for (const rel of matches) {
    const path = join(base, rel);
    if (rel.toLowerCase().endsWith('.parquet.gz')) {
      throw new DataError('gzip-compressed Parquet is not read: Parquet compresses its pages itself; decompress the file', { file: path });
    }
    const info = await stat(path);
    files.push({ path, rel, size: info.size, mtimeMs: info.mtimeMs, read: corpusFileFormat(rel) });
  }
  files.sort(byPath);
  if (files.length === 0) throw new DataError(`no files match the pattern ${JSON.stringify(pattern)} in ${base}`, { file: source });
  const byteSize = files.reduce((a, f) => a + f.size, 0);
  if (byteSize === 0) throw new DataError('empty corpus: all matching files have 0 bytes', { file: source });
  return withIterator({
    name: spec,
    kind: 'glob',
    source,
    byteSize,
    options,
    fingerprint: pathFingerprint('glob', files, options),
    documents: () => filesDocuments(files, options),
  });
}
