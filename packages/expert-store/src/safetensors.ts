// safetensors files (the Hugging Face format, readable by the Python `safetensors` library):
//   8 bytes   N, little-endian u64: the header length
//   N bytes   UTF-8 JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}},
//             padded with spaces to a multiple of 8 bytes so that the data section starts aligned
//   rest      the tensors' raw little-endian bytes, contiguous, offsets relative to the data section
// Files are written like the reference implementation does: tensors ordered by dtype alignment
// (largest first) then by name, so every tensor starts at a multiple of its element size.
import { closeSync, fstatSync, fsyncSync, openSync } from 'node:fs';
import { createHash } from 'node:crypto';
import {
  DTYPE_ARRAY,
  DTYPE_BYTES,
  elementCount,
  isSafetensorsDtype,
  validateNamedArray,
  type NamedArray,
  type NamedArrayData,
  type NamedArraySpec,
  type SafetensorsDtype,
} from './named-array.js';
import { assertLittleEndian, bytesOf, readAllAt, StoreFileError, writeAllAt } from './file-io.js';

/** The reference implementation refuses headers larger than this. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Dtypes in the reference implementation's order of increasing alignment (its sort key). */
const DTYPE_ORDER: readonly string[] = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64'];

export type SafetensorsMetadata = Record<string, string>;

/** One tensor of a file: its spec and where its bytes are, relative to the data section. */
export interface SafetensorsEntry extends NamedArraySpec {
  begin: number;
  end: number;
}

export interface SafetensorsLayout {
  /** JSON header including the space padding (its length is N). */
  header: Uint8Array;
  /** Entries in data order. */
  entries: SafetensorsEntry[];
  /** File offset of the data section: 8 + N. */
  dataStart: number;
  /** Total file size in bytes. */
  fileBytes: number;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function validateMetadata(metadata: SafetensorsMetadata | undefined, file: string): void {
  if (metadata === undefined) return;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new StoreFileError(file, `metadata must be an object of strings, got ${JSON.stringify(metadata)}`);
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new StoreFileError(file, `metadata value '${k}' must be a string (the format allows only strings), got ${JSON.stringify(v)}`);
  }
}

/** The header and data layout for `specs`, ordered as the reference implementation orders them. */
export function planSafetensors(specs: readonly NamedArraySpec[], metadata?: SafetensorsMetadata, file = 'safetensors'): SafetensorsLayout {
  validateMetadata(metadata, file);
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === '__metadata__') throw new StoreFileError(file, `'__metadata__' is reserved and cannot name a tensor`);
    if (seen.has(s.name)) throw new StoreFileError(file, `tensor name '${s.name}' appears twice`);
    seen.add(s.name);
  }
  const ordered = [...specs].sort((a, b) => DTYPE_ORDER.indexOf(b.dtype) - DTYPE_ORDER.indexOf(a.dtype) || compareBytes(a.name, b.name));
  const json: Record<string, unknown> = {};
  if (metadata !== undefined) json.__metadata__ = metadata;
  const entries: SafetensorsEntry[] = [];
  let offset = 0;
  for (const s of ordered) {
    const bytes = elementCount(s.shape) * DTYPE_BYTES[s.dtype];
    entries.push({ name: s.name, dtype: s.dtype, shape: [...s.shape], begin: offset, end: offset + bytes });
    json[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = Math.ceil(text.length / 8) * 8;
  const header = new Uint8Array(padded).fill(0x20);
  header.set(text);
  return { header, entries, dataStart: 8 + padded, fileBytes: 8 + padded + offset };
}

function lengthPrefix(n: number): Uint8Array {
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(n), true);
  return prefix;
}

function arraysByName(arrays: readonly NamedArray[], file: string): Map<string, NamedArray> {
  const byName = new Map<string, NamedArray>();
  for (const a of arrays) {
    validateNamedArray(a, `${file}: tensor`);
    byName.set(a.name, a);
  }
  return byName;
}

/** The whole file in memory (for small files and tests; large ones go through `writeSafetensors`). */
export function serializeSafetensors(arrays: readonly NamedArray[], metadata?: SafetensorsMetadata): Uint8Array {
  assertLittleEndian();
  const byName = arraysByName(arrays, 'safetensors');
  const layout = planSafetensors(arrays, metadata);
  const out = new Uint8Array(layout.fileBytes);
  out.set(lengthPrefix(layout.header.length), 0);
  out.set(layout.header, 8);
  for (const e of layout.entries) out.set(bytesOf(byName.get(e.name)!.data), layout.dataStart + e.begin);
  return out;
}

export interface WriteResult {
  /** File size in bytes. */
  bytes: number;
  /** SHA-256 of the file, hex. */
  sha256: string;
  entries: SafetensorsEntry[];
}

export interface WriteOptions {
  /** fsync the file before closing it (default true). */
  fsync?: boolean;
}

/**
 * Writes `arrays` to `path` (created or truncated), streaming each array's bytes without copying
 * them, and returns the file's size and SHA-256 (computed on the bytes as they are written).
 */
export function writeSafetensors(path: string, arrays: readonly NamedArray[], metadata?: SafetensorsMetadata, options: WriteOptions = {}): WriteResult {
  assertLittleEndian();
  const byName = arraysByName(arrays, path);
  const layout = planSafetensors(arrays, metadata, path);
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    let position = writeAllAt(fd, lengthPrefix(layout.header.length), 0, hash);
    position = writeAllAt(fd, layout.header, position, hash);
    for (const e of layout.entries) position = writeAllAt(fd, bytesOf(byName.get(e.name)!.data), position, hash);
    if (options.fsync ?? true) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { bytes: layout.fileBytes, sha256: hash.digest('hex'), entries: layout.entries };
}

export interface ParsedHeader {
  metadata: SafetensorsMetadata | undefined;
  /** Entries in data order. */
  entries: SafetensorsEntry[];
  dataStart: number;
}

function headerLength(prefix: Uint8Array, file: string, fileBytes: number): number {
  if (fileBytes < 8) throw new StoreFileError(file, `is ${fileBytes} bytes, too short for the 8-byte header length (truncated or not a safetensors file)`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new StoreFileError(file, `header length ${n} is over ${MAX_HEADER_BYTES} bytes (corrupt or not a safetensors file)`);
  if (8n + n > BigInt(fileBytes)) throw new StoreFileError(file, `header length ${n} runs past the end of the ${fileBytes}-byte file (truncated or corrupt)`);
  return Number(n);
}

/**
 * Parses and validates a header the way the reference implementation does: UTF-8 JSON, string
 * metadata, known dtypes, offsets contiguous from 0 that match each shape, and a data section that
 * ends exactly at the end of the file.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileBytes: number, file: string): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new StoreFileError(file, 'header is not valid UTF-8 (corrupt file)');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StoreFileError(file, `header is not valid JSON (corrupt file): ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new StoreFileError(file, 'header is not a JSON object (corrupt file)');
  const record = json as Record<string, unknown>;
  const metadata = record.__metadata__ as SafetensorsMetadata | undefined;
  validateMetadata(metadata, file);
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(record)) {
    if (name === '__metadata__') continue;
    const i = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof i !== 'object' || i === null) throw new StoreFileError(file, `tensor '${name}': header entry is not an object`);
    if (!isSafetensorsDtype(i.dtype)) throw new StoreFileError(file, `tensor '${name}': unsupported dtype ${JSON.stringify(i.dtype)}`);
    const shape = i.shape;
    if (!Array.isArray(shape) || shape.some((s) => !Number.isSafeInteger(s) || s < 0)) {
      throw new StoreFileError(file, `tensor '${name}': shape must be non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const off = i.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || off.some((o) => !Number.isSafeInteger(o) || o < 0)) {
      throw new StoreFileError(file, `tensor '${name}': data_offsets must be two non-negative integers, got ${JSON.stringify(off)}`);
    }
    entries.push({ name, dtype: i.dtype, shape: shape as number[], begin: off[0] as number, end: off[1] as number });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected || e.end < e.begin) {
      throw new StoreFileError(file, `tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] leave a gap or overlap (expected to start at ${expected})`);
    }
    const bytes = elementCount(e.shape) * DTYPE_BYTES[e.dtype];
    if (e.end - e.begin !== bytes) {
      throw new StoreFileError(file, `tensor '${e.name}': ${e.dtype} ${JSON.stringify(e.shape)} needs ${bytes} bytes but data_offsets span ${e.end - e.begin}`);
    }
    expected = e.end;
  }
  const dataStart = 8 + headerBytes.length;
  if (dataStart + expected !== fileBytes) {
    throw new StoreFileError(
      file,
      dataStart + expected > fileBytes
        ? `is ${fileBytes} bytes but its header describes ${dataStart + expected} (truncated file)`
        : `is ${fileBytes} bytes but its header describes only ${dataStart + expected} (trailing bytes: corrupt file)`,
    );
  }
  return { metadata, entries, dataStart };
}

/** Parses a whole file held in memory. Arrays are copies (aligned, independent of `bytes`). */
export function deserializeSafetensors(bytes: Uint8Array, file = 'safetensors buffer'): { metadata: SafetensorsMetadata | undefined; arrays: NamedArray[] } {
  assertLittleEndian();
  const n = headerLength(bytes.subarray(0, 8), file, bytes.length);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length, file);
  const arrays = header.entries.map((e) => {
    const count = elementCount(e.shape);
    const Ctor = DTYPE_ARRAY[e.dtype];
    const data = new Ctor(new ArrayBuffer(count * Ctor.BYTES_PER_ELEMENT), 0, count);
    bytesOf(data).set(bytes.subarray(header.dataStart + e.begin, header.dataStart + e.end));
    return { name: e.name, dtype: e.dtype, shape: e.shape, data };
  });
  return { metadata: header.metadata, arrays };
}

/**
 * An open safetensors file that reads tensors on demand with positional reads: nothing but the
 * header is held in memory, so a caller can load one huge tensor at a time (or part of one).
 */
export class SafetensorsReader {
  readonly path: string;
  readonly metadata: SafetensorsMetadata | undefined;
  /** Entries in data order. */
  readonly entries: readonly SafetensorsEntry[];
  readonly fileBytes: number;
  private readonly dataStart: number;
  private readonly byName: Map<string, SafetensorsEntry>;
  private fd: number | undefined;

  constructor(path: string) {
    assertLittleEndian();
    this.path = path;
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new StoreFileError(path, code === 'ENOENT' ? 'file is missing' : `cannot be opened (${code ?? String(err)})`);
    }
    try {
      this.fileBytes = fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      if (this.fileBytes >= 8) readAllAt(fd, prefix, 0, path);
      const n = headerLength(prefix, path, this.fileBytes);
      const header = new Uint8Array(n);
      readAllAt(fd, header, 8, path);
      const parsed = parseSafetensorsHeader(header, this.fileBytes, path);
      this.metadata = parsed.metadata;
      this.entries = parsed.entries;
      this.dataStart = parsed.dataStart;
      this.byName = new Map(parsed.entries.map((e) => [e.name, e]));
      this.fd = fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.byName.get(name);
    if (!e) throw new StoreFileError(this.path, `has no tensor named '${name}' (it has ${this.entries.length}: ${this.entries.slice(0, 8).map((x) => x.name).join(', ')}${this.entries.length > 8 ? ', ...' : ''})`);
    return e;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`SafetensorsReader for ${this.path} is closed`);
    return this.fd;
  }

  /** Reads one tensor into a new array. */
  read(name: string): NamedArray {
    const e = this.entry(name);
    const count = elementCount(e.shape);
    const Ctor = DTYPE_ARRAY[e.dtype];
    const data = new Ctor(new ArrayBuffer(count * Ctor.BYTES_PER_ELEMENT), 0, count);
    readAllAt(this.openFd(), bytesOf(data), this.dataStart + e.begin, this.path);
    return { name: e.name, dtype: e.dtype, shape: [...e.shape], data };
  }

  /**
   * Reads elements `[start, start + out.length)` of tensor `name` (row-major) into `out`, which must
   * be of the tensor's array class; reads a slice of rows of a huge table without loading the rest.
   */
  readInto(name: string, out: NamedArrayData, start = 0): void {
    const e = this.entry(name);
    const Ctor = DTYPE_ARRAY[e.dtype];
    if (!(out instanceof Ctor)) throw new Error(`readInto '${name}': out must be a ${Ctor.name} for dtype ${e.dtype}, got ${out.constructor.name}`);
    const count = elementCount(e.shape);
    if (!Number.isSafeInteger(start) || start < 0 || start + out.length > count) {
      throw new Error(`readInto '${name}': elements [${start}, ${start + out.length}) are outside the tensor's ${count}`);
    }
    readAllAt(this.openFd(), bytesOf(out), this.dataStart + e.begin + start * DTYPE_BYTES[e.dtype], this.path);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export interface SafetensorsFile {
  metadata: SafetensorsMetadata | undefined;
  /** Tensors in the file's data order. */
  arrays: NamedArray[];
  get(name: string): NamedArray | undefined;
}

/** Reads a whole file. Each tensor gets its own aligned array. */
export function readSafetensors(path: string): SafetensorsFile {
  const reader = new SafetensorsReader(path);
  try {
    const arrays = reader.entries.map((e) => reader.read(e.name));
    const byName = new Map(arrays.map((a) => [a.name, a]));
    return { metadata: reader.metadata, arrays, get: (name) => byName.get(name) };
  } finally {
    reader.close();
  }
}

export type { SafetensorsDtype };
