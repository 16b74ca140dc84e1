// The unit of every file this project writes: a named, shaped, typed array (one safetensors entry).

/** safetensors dtype names. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'U8' | 'U16' | 'U32' | 'I8' | 'I16' | 'BOOL';

export type NamedArrayData = Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | BigInt64Array;

export interface NamedArray {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Row-major values. F16/BF16 are held as their raw 16-bit patterns in a Uint16Array. */
  data: NamedArrayData;
}

/** Shape and dtype of an entry, without its values (what a manifest or a file header records). */
export interface NamedArraySpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
}

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
};

type ArrayConstructorOf = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NamedArrayData;

/** The typed array class that holds each dtype in memory. */
export const DTYPE_ARRAY: Readonly<Record<SafetensorsDtype, ArrayConstructorOf & { BYTES_PER_ELEMENT: number }>> = {
  BOOL: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
};

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, value);
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Byte size of the entry's values. */
export function namedArrayBytes(entry: NamedArraySpec): number {
  return elementCount(entry.shape) * DTYPE_BYTES[entry.dtype];
}

/** Allocates a zeroed array for `spec`. */
export function allocateNamedArray(spec: NamedArraySpec): NamedArray {
  const count = elementCount(spec.shape);
  const Ctor = DTYPE_ARRAY[spec.dtype];
  return { name: spec.name, dtype: spec.dtype, shape: [...spec.shape], data: new Ctor(new ArrayBuffer(count * Ctor.BYTES_PER_ELEMENT), 0, count) };
}

/**
 * Throws one clear error (naming the entry and the field) if `entry` is not a consistent named
 * array: a known dtype, a shape of non-negative integers, data of the dtype's class and length.
 */
export function validateNamedArray(entry: NamedArray, context = 'named array'): void {
  if (typeof entry.name !== 'string' || entry.name.length === 0) {
    throw new Error(`${context}: name must be a non-empty string, got ${JSON.stringify(entry.name)}`);
  }
  const label = `${context} '${entry.name}'`;
  if (!isSafetensorsDtype(entry.dtype)) throw new Error(`${label}: unknown dtype ${JSON.stringify(entry.dtype)}`);
  if (!Array.isArray(entry.shape) || entry.shape.some((s) => !Number.isSafeInteger(s) || s < 0)) {
    throw new Error(`${label}: shape must be an array of non-negative integers, got ${JSON.stringify(entry.shape)}`);
  }
  const Ctor = DTYPE_ARRAY[entry.dtype];
  if (!(entry.data instanceof Ctor)) {
    throw new Error(`${label}: dtype ${entry.dtype} needs data in a ${Ctor.name}, got ${entry.data?.constructor?.name ?? typeof entry.data}`);
  }
  const count = elementCount(entry.shape);
  if (entry.data.length !== count) {
    throw new Error(`${label}: shape ${JSON.stringify(entry.shape)} has ${count} elements but data has ${entry.data.length}`);
  }
}

/** Throws naming `name` if `entry` is missing or its shape/dtype differ from what is expected. */
export function expectEntry(
  name: string,
  entry: NamedArray | undefined,
  expected: { shape: readonly number[]; dtypes: readonly SafetensorsDtype[] },
): NamedArray {
  if (!entry) throw new Error(`state entry '${name}' is missing`);
  if (!expected.dtypes.includes(entry.dtype)) {
    throw new Error(`state entry '${name}' has dtype ${entry.dtype}, expected ${expected.dtypes.join(' or ')}`);
  }
  if (entry.shape.length !== expected.shape.length || entry.shape.some((s, i) => s !== expected.shape[i])) {
    throw new Error(`state entry '${name}' has shape ${JSON.stringify(entry.shape)}, expected ${JSON.stringify(expected.shape)}`);
  }
  validateNamedArray(entry, 'state entry');
  return entry;
}

// Arrays that a reader allocated for its caller and nobody else holds (e.g. a lazy checkpoint's
// reads): a consumer may take them over instead of copying, which keeps peak memory at one copy.
const freshArrays = new WeakSet<NamedArrayData>();

/** Marks `data` as freshly allocated for the caller, so that one consumer may take it over. */
export function markFresh<T extends NamedArrayData>(data: T): T {
  freshArrays.add(data);
  return data;
}

/** True (once) if `data` was marked fresh: the caller may keep it without copying. */
export function claimFresh(data: NamedArrayData): boolean {
  return freshArrays.delete(data);
}
