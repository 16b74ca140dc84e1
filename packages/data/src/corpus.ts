// A corpus is a deterministic sequence of documents plus what identifies its content (the
// fingerprint). Documents are the unit of splitting: each lands in exactly one of train / validation /
// test. Path corpora are streamed, so a corpus larger than memory costs one document at a time.
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve, sep } from 'node:path';
import { BUILTIN_CORPORA, loadBuiltinCorpus, type BuiltinCorpusName } from './builtin-corpora.js';
import { DataError } from './errors.js';
import { sha256File } from './file-hash.js';
import { readLines, readSections, readTextChunks } from './text-reader.js';

export type CorpusKind = 'builtin' | 'text' | 'folder' | 'jsonl';

export interface CorpusDocument {
  /** Stable, human-readable: `1790_george_washington_n`, `chapter_1`, `notes/a.txt`, `data.jsonl:17`. */
  id: string;
  /** Well-formed Unicode (lone surrogates from JSON escapes become U+FFFD). Never empty. */
  text: string;
  /** Bytes of the corpus source consumed so far (for progress; ends at `byteSize`). */
  position: number;
}

export interface Corpus {
  /** `sotu`, `moby-dick`, or the file/folder name for a path. */
  readonly name: string;
  readonly kind: CorpusKind;
  /** `package@version` for built-in corpora, else the absolute path. */
  readonly source: string;
  /** Bytes read to produce the documents: file sizes, or the texts' UTF-8 bytes for built-ins. */
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
  /** JSONL: the field holding the document text (default `text`). */
  textField?: string;
  /** Plain text file: cut into documents at blank lines once a document has this many characters (default 8192). */
  sectionChars?: number;
  /** Plain text file: hard cap of a document without blank lines, cut at a newline (default 1 Mi characters). */
  maxSectionChars?: number;
  /** Folder files and JSONL lines larger than this are refused (default 64 MiB / 64 Mi characters). */
  maxDocumentBytes?: number;
}

export const TEXT_EXTENSIONS: readonly string[] = ['.txt', '.text', '.md'];
const JSONL_EXTENSIONS = ['.jsonl', '.ndjson'];

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
 * A corpus by name (`sotu`, `moby-dick`) or by path:
 * - a `.jsonl` / `.ndjson` file: one document per non-blank line, from its `text` field;
 * - a folder: one document per `.txt` / `.text` / `.md` file below it (hidden entries skipped), in
 *   sorted path order;
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
    throw new DataError(
      `corpus not found: ${JSON.stringify(spec)} is neither a built-in corpus (${BUILTIN_CORPORA.join(', ')}) nor an existing file or folder`,
      { file: path },
    );
  }
  if (info.isDirectory()) return folderCorpus(path, opts);
  if (!info.isFile()) throw new DataError('corpus path is neither a file nor a folder', { file: path });
  if (info.size === 0) throw new DataError('empty corpus: the file has 0 bytes', { file: path });
  const kind: CorpusKind = JSONL_EXTENSIONS.includes(extname(path).toLowerCase()) ? 'jsonl' : 'text';
  return fileCorpus(path, kind, info.size, info.mtimeMs, opts);
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
}

function pathFingerprint(kind: CorpusKind, files: FileEntry[], options: Required<CorpusOptions>): () => Promise<string> {
  // Only the options that change the documents; fingerprint mode and size caps do not.
  const shape =
    kind === 'text'
      ? { sectionChars: options.sectionChars, maxSectionChars: options.maxSectionChars }
      : kind === 'jsonl'
        ? { textField: options.textField }
        : { extensions: TEXT_EXTENSIONS };
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

function fileCorpus(
  path: string,
  kind: 'text' | 'jsonl',
  size: number,
  mtimeMs: number,
  options: Required<CorpusOptions>,
): Corpus {
  const name = basename(path);
  const files = [{ path, rel: name, size, mtimeMs }];
  const documents =
    kind === 'jsonl'
      ? () => jsonlDocuments(path, name, options)
      : async function* (): AsyncGenerator<CorpusDocument> {
          for await (const section of readSections(path, options.sectionChars, options.maxSectionChars)) {
            yield { id: `${name}:${section.line}`, text: section.text, position: section.position };
          }
        };
  return withIterator({
    name,
    kind,
    source: path,
    byteSize: size,
    options,
    fingerprint: pathFingerprint(kind, files, options),
    documents,
  });
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

function preview(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

async function listTextFiles(root: string): Promise<FileEntry[]> {
  const out: FileEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && TEXT_EXTENSIONS.includes(extname(entry.name).toLowerCase())) {
        const info = await stat(path);
        out.push({ path, rel: relative(root, path).split(sep).join('/'), size: info.size, mtimeMs: info.mtimeMs });
      }
    }
  };
  await walk(root);
  // Code-unit order, not locale order: the same on every machine.
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

async function folderCorpus(root: string, options: Required<CorpusOptions>): Promise<Corpus> {
  const files = await listTextFiles(root);
  if (files.length === 0) {
    throw new DataError(`empty corpus: no ${TEXT_EXTENSIONS.join(' / ')} files in the folder`, { file: root });
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
    async *documents() {
      let done = 0;
      for (const file of files) {
        if (file.size > options.maxDocumentBytes) {
          throw new DataError(
            `file of ${file.size} bytes is over maxDocumentBytes (${options.maxDocumentBytes}): one folder file is one document; address a large file by its own path (it is then cut into sections)`,
            { file: file.path },
          );
        }
        let text = '';
        for await (const chunk of readTextChunks(file.path)) text += chunk.text;
        done += file.size;
        if (text.length > 0) yield { id: file.rel, text, position: done };
      }
    },
  });
}
