// Sharded safetensors checkpoints with a manifest, written atomically and verified on load.
//
// Layout of a checkpoint directory:
//   model-00001-of-0000K.safetensors ...   shards, each a plain safetensors file
//   manifest.json                          format version, shards (file, size, sha256, tensors),
//                                          every tensor's shard/dtype/shape, total size, user metadata;
//                                          also `weight_map` + `metadata.total_size` as in the
//                                          Hugging Face sharded-index convention
//
// Atomic save: everything is written into `<dir>.tmp-<pid>-<rand>` (each file fsynced, then the
// directory), the previous checkpoint is renamed to `<dir>.old-<pid>-<rand>`, the new one renamed to
// `<dir>`, the parent fsynced, and only then the old one deleted. A crash at any point leaves either
// the previous checkpoint at `<dir>` or, in the instant between the two renames, at `<dir>.old-*`,
// which `loadCheckpoint` falls back to and the next `saveCheckpoint` moves back.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { markFresh, namedArrayBytes, validateNamedArray, type NamedArray, type NamedArrayData, type NamedArraySpec, type SafetensorsDtype } from './named-array.js';
import { SafetensorsReader, writeSafetensors } from './safetensors.js';
import { fsyncDir, sha256File, StoreFileError } from './file-io.js';

export const CHECKPOINT_FORMAT = 'peer-checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
/** Default largest shard: 2 GiB (a tensor larger than the limit gets a shard of its own). */
export const DEFAULT_SHARD_BYTES = 2 * 1024 ** 3;

/** A checkpoint that cannot be loaded or saved; `file` is the file (or directory) at fault. */
export class CheckpointError extends StoreFileError {
  constructor(file: string, problem: string) {
    super(file, problem);
    this.name = 'CheckpointError';
  }
}

export interface ManifestShard {
  file: string;
  bytes: number;
  sha256: string;
  tensors: string[];
}

export interface ManifestTensor {
  shard: string;
  dtype: SafetensorsDtype;
  shape: number[];
}

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  formatVersion: number;
  createdAt: string;
  /** Bytes of tensor data (without headers). */
  totalBytes: number;
  shards: ManifestShard[];
  tensors: Record<string, ManifestTensor>;
  /** Hugging Face index convention: tensor name -> shard file. */
  weight_map: Record<string, string>;
  /** User metadata, plus `total_size` as in the Hugging Face convention. */
  metadata: Record<string, string | number>;
}

export type SaveStage = 'shard-written' | 'manifest-written' | 'old-moved' | 'committed';

export interface SaveProgress {
  stage: SaveStage;
  /** The file or directory the stage just finished. */
  path: string;
  shardIndex?: number;
  shardCount?: number;
}

export interface SaveOptions {
  /** Largest shard in bytes (default 2 GiB). */
  shardBytes?: number;
  /** Strings stored in the manifest (and so in no shard). */
  metadata?: Record<string, string>;
  /**
   * Called after each durable step; throwing from it aborts the save (the previous checkpoint stays).
   * Useful for progress bars and for crash tests.
   */
  onProgress?: (progress: SaveProgress) => void;
}

function shardName(index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/** Groups arrays into shards of at most `shardBytes` of data, in the order given. */
export function planShards(arrays: readonly NamedArraySpec[], shardBytes: number): NamedArraySpec[][] {
  const shards: NamedArraySpec[][] = [];
  let current: NamedArraySpec[] = [];
  let size = 0;
  for (const a of arrays) {
    const bytes = namedArrayBytes(a);
    if (current.length > 0 && size + bytes > shardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(a);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

function writeFileDurably(path: string, text: string): void {
  writeFileSync(path, text);
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function siblings(dir: string, kind: 'tmp' | 'old'): string[] {
  const parent = dirname(dir);
  const prefix = `${basename(dir)}.${kind}-`;
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .filter((n) => n.startsWith(prefix))
    .map((n) => join(parent, n));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The previous checkpoint left at `<dir>.old-*` by a save that died between its two renames. */
function stranded(dir: string): string | undefined {
  return siblings(dir, 'old')
    .filter((p) => existsSync(join(p, MANIFEST_FILE)))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

/** Puts back a checkpoint stranded by a crash mid-swap and removes temp dirs of dead saves. */
function recover(dir: string): void {
  if (!existsSync(dir)) {
    const old = stranded(dir);
    if (old) {
      renameSync(old, dir);
      fsyncDir(dirname(dir));
    }
  }
  for (const tmp of siblings(dir, 'tmp')) {
    const pid = Number(basename(tmp).slice(basename(dir).length + 5).split('-')[0]);
    if (!Number.isInteger(pid) || !processAlive(pid)) rmSync(tmp, { recursive: true, force: true });
  }
  for (const old of siblings(dir, 'old')) if (existsSync(dir)) rmSync(old, { recursive: true, force: true });
}

/**
 * Saves `arrays` as a sharded checkpoint in `dir`, atomically: until the new checkpoint is complete
 * and durable, `dir` keeps the previous one. `dir` must be absent, empty, or a checkpoint.
 */
export function saveCheckpoint(dir: string, arrays: readonly NamedArray[], options: SaveOptions = {}): CheckpointManifest {
  const target = resolve(dir);
  const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isFinite(shardBytes) || shardBytes <= 0) throw new Error(`saveCheckpoint: shardBytes must be a positive number, got ${shardBytes}`);
  const names = new Set<string>();
  for (const a of arrays) {
    validateNamedArray(a, 'saveCheckpoint: array');
    if (names.has(a.name)) throw new Error(`saveCheckpoint: array name '${a.name}' appears twice`);
    names.add(a.name);
  }
  for (const [k, v] of Object.entries(options.metadata ?? {})) {
    if (typeof v !== 'string') throw new Error(`saveCheckpoint: metadata '${k}' must be a string, got ${JSON.stringify(v)}`);
  }

  mkdirSync(dirname(target), { recursive: true });
  recover(target);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new CheckpointError(target, 'exists and is not a directory; refusing to replace it');
    const entries = readdirSync(target);
    if (entries.length > 0 && !entries.includes(MANIFEST_FILE)) {
      throw new CheckpointError(target, `is a non-empty directory without ${MANIFEST_FILE} (not a checkpoint); refusing to replace it`);
    }
  }

  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${target}.tmp-${tag}`;
  mkdirSync(tmp);
  let committed = false;
  try {
    const byName = new Map(arrays.map((a) => [a.name, a]));
    const plan = planShards(arrays, shardBytes);
    const manifest: CheckpointManifest = {
      format: CHECKPOINT_FORMAT,
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      totalBytes: 0,
      shards: [],
      tensors: {},
      weight_map: {},
      metadata: {},
    };
    plan.forEach((specs, index) => {
      const file = shardName(index, plan.length);
      const written = writeSafetensors(
        join(tmp, file),
        specs.map((s) => byName.get(s.name)!),
        { format: 'pt', shard: `${index + 1}/${plan.length}` },
      );
      manifest.shards.push({ file, bytes: written.bytes, sha256: written.sha256, tensors: specs.map((s) => s.name) });
      for (const s of specs) {
        manifest.tensors[s.name] = { shard: file, dtype: s.dtype, shape: [...s.shape] };
        manifest.weight_map[s.name] = file;
        manifest.totalBytes += namedArrayBytes(s);
      }
      options.onProgress?.({ stage: 'shard-written', path: join(tmp, file), shardIndex: index, shardCount: plan.length });
    });
    manifest.metadata = { ...options.metadata, total_size: manifest.totalBytes };
    writeFileDurably(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 1)}\n`);
    fsyncDir(tmp);
    options.onProgress?.({ stage: 'manifest-written', path: join(tmp, MANIFEST_FILE) });

    let old: string | undefined;
    if (existsSync(target)) {
      old = `${target}.old-${tag}`;
      renameSync(target, old);
      options.onProgress?.({ stage: 'old-moved', path: old });
    }
    renameSync(tmp, target);
    committed = true;
    fsyncDir(dirname(target));
    if (old) rmSync(old, { recursive: true, force: true });
    options.onProgress?.({ stage: 'committed', path: target });
    return manifest;
  } catch (err) {
    if (!committed) {
      rmSync(tmp, { recursive: true, force: true });
      // An abort right after moving the previous checkpoint aside: put it back.
      recover(target);
    }
    throw err;
  }
}

export interface LoadOptions {
  /**
   * Read tensors only when asked for (`get` / `readInto`), with positional reads, instead of loading
   * everything now. Default false.
   */
  lazy?: boolean;
  /** Check each shard's SHA-256 against the manifest (streamed; default true). */
  verify?: boolean;
  /** Entries that must be present with these shapes (and dtypes, if given). */
  expect?: readonly (Pick<NamedArraySpec, 'name' | 'shape'> & { dtype?: SafetensorsDtype })[];
}

/** An opened checkpoint. `get` has the signature `loadStateEntries` takes. */
export interface Checkpoint {
  /** The directory actually read (a stranded `<dir>.old-*` after a crash mid-save). */
  readonly dir: string;
  readonly manifest: CheckpointManifest;
  readonly names: readonly string[];
  spec(name: string): NamedArraySpec | undefined;
  /** The entry's values (lazy: read from disk now, into a new array owned by the caller). */
  get(name: string): NamedArray | undefined;
  /** Reads elements `[start, start + out.length)` of an entry into `out`. */
  readInto(name: string, out: NamedArrayData, start?: number): void;
  /** Closes shard files (lazy mode). */
  close(): void;
}

function readManifest(dir: string): CheckpointManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) throw new CheckpointError(path, 'manifest is missing (not a checkpoint, or a save never completed)');
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as CheckpointManifest;
  } catch (err) {
    throw new CheckpointError(path, `manifest is not valid JSON (corrupt file): ${(err as Error).message}`);
  }
  if (manifest?.format !== CHECKPOINT_FORMAT) throw new CheckpointError(path, `format is ${JSON.stringify(manifest?.format)}, expected '${CHECKPOINT_FORMAT}'`);
  if (manifest.formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointError(path, `format version ${manifest.formatVersion} is not supported (this library reads version ${CHECKPOINT_FORMAT_VERSION})`);
  }
  if (!Array.isArray(manifest.shards) || typeof manifest.tensors !== 'object' || manifest.tensors === null) {
    throw new CheckpointError(path, 'manifest lacks shards or tensors (corrupt file)');
  }
  return manifest;
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((s, i) => s === b[i]);

/**
 * Opens the checkpoint in `dir`, refusing (with the file and the problem named) a missing or
 * truncated shard, a checksum mismatch, a header that disagrees with the manifest, or an entry whose
 * shape differs from `options.expect`.
 */
export function loadCheckpoint(dir: string, options: LoadOptions = {}): Checkpoint {
  let root = resolve(dir);
  if (!existsSync(root)) {
    const old = stranded(root);
    if (!old) throw new CheckpointError(root, 'checkpoint directory is missing');
    root = old;
  }
  const manifest = readManifest(root);
  const verify = options.verify ?? true;
  const readers = new Map<string, SafetensorsReader>();
  const closeAll = () => {
    for (const r of readers.values()) r.close();
    readers.clear();
  };
  try {
    for (const shard of manifest.shards) {
      const path = join(root, shard.file);
      if (!existsSync(path)) throw new CheckpointError(path, 'shard file is missing');
      const size = statSync(path).size;
      if (size !== shard.bytes) {
        throw new CheckpointError(path, `shard is ${size} bytes but the manifest says ${shard.bytes} (${size < shard.bytes ? 'truncated' : 'extended'} file)`);
      }
      if (verify) {
        const sha = sha256File(path);
        if (sha !== shard.sha256) throw new CheckpointError(path, `sha256 ${sha} does not match the manifest's ${shard.sha256} (corrupt file)`);
      }
      const reader = new SafetensorsReader(path);
      readers.set(shard.file, reader);
      for (const name of shard.tensors) {
        const want = manifest.tensors[name];
        if (!reader.has(name)) throw new CheckpointError(path, `tensor '${name}' listed in the manifest is not in the shard`);
        const got = reader.entry(name);
        if (!want || got.dtype !== want.dtype || !sameShape(got.shape, want.shape)) {
          throw new CheckpointError(path, `tensor '${name}' is ${got.dtype} ${JSON.stringify(got.shape)} in the shard but ${want?.dtype} ${JSON.stringify(want?.shape)} in the manifest`);
        }
      }
    }
    for (const e of options.expect ?? []) {
      const t = manifest.tensors[e.name];
      if (!t) throw new CheckpointError(join(root, MANIFEST_FILE), `expected tensor '${e.name}' is not in the checkpoint`);
      if (!sameShape(t.shape, e.shape) || (e.dtype !== undefined && e.dtype !== t.dtype)) {
        throw new CheckpointError(
          join(root, t.shard),
          `tensor '${e.name}' is ${t.dtype} ${JSON.stringify(t.shape)} but ${e.dtype ?? ''}${e.dtype ? ' ' : ''}${JSON.stringify(e.shape)} was expected (wrong shape)`,
        );
      }
    }
  } catch (err) {
    closeAll();
    throw err;
  }

  const names = Object.keys(manifest.tensors);
  const readerOf = (name: string): SafetensorsReader | undefined => {
    const t = manifest.tensors[name];
    if (!t) return undefined;
    const r = readers.get(t.shard);
    if (!r) throw new Error(`checkpoint ${root} is closed`);
    return r;
  };
  const spec = (name: string): NamedArraySpec | undefined => {
    const t = manifest.tensors[name];
    return t ? { name, dtype: t.dtype, shape: [...t.shape] } : undefined;
  };

  if (options.lazy) {
    return {
      dir: root,
      manifest,
      names,
      spec,
      get: (name) => {
        const entry = readerOf(name)?.read(name);
        if (entry) markFresh(entry.data);
        return entry;
      },
      readInto: (name, out, start = 0) => {
        const r = readerOf(name);
        if (!r) throw new CheckpointError(root, `has no tensor named '${name}'`);
        r.readInto(name, out, start);
      },
      close: closeAll,
    };
  }
  const loaded = new Map<string, NamedArray>();
  try {
    for (const name of names) loaded.set(name, readerOf(name)!.read(name));
  } finally {
    closeAll();
  }
  return {
    dir: root,
    manifest,
    names,
    spec,
    get: (name) => loaded.get(name),
    readInto: (name, out, start = 0) => {
      const a = loaded.get(name);
      if (!a) throw new CheckpointError(root, `has no tensor named '${name}'`);
      if (a.data.constructor !== out.constructor) throw new Error(`readInto '${name}': out must be a ${a.data.constructor.name}, got ${out.constructor.name}`);
      if (start < 0 || start + out.length > a.data.length) throw new Error(`readInto '${name}': elements [${start}, ${start + out.length}) are outside the tensor's ${a.data.length}`);
      (out as Float32Array).set((a.data as Float32Array).subarray(start, start + out.length));
    },
    close: () => loaded.clear(),
  };
}
