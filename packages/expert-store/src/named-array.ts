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
