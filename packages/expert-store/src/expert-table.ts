// A [N, d] table of expert (or memory-slot) vectors held in plain typed memory outside the tfjs
// heap: N = 1024^2 rows of d = 256 is 1 GiB, and two tables with Adam moments are 6 GiB, past what
// the wasm heap (wasm32, 4 GiB) can hold. Lookups copy rows into a tfjs tensor.
//
// Axes: N rows (experts), d row width, n looked-up rows.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@peer/backend';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBFloat16, float32ToFloat16 } from './half-float.js';
import { claimFresh, expectEntry, type NamedArray, type SafetensorsDtype } from './named-array.js';
import { fillNormalSeeded, fillUniformSeeded } from './seeded-fill.js';

export type TableInit = { kind: 'normal'; std: number } | { kind: 'uniform'; limit: number } | { kind: 'zeros' };

/** How rows are stored: float32 for training; float16/bfloat16 halve memory for inference. */
export type TableStorage = 'float32' | 'float16' | 'bfloat16';

export interface ExpertTableOptions {
  /** N, the number of rows. */
  rows: number;
  /** d, the width of a row. */
  dim: number;
  /** Default: normal with std 1/sqrt(d) (the spec's init for PEER's u and v). */
  init?: TableInit;
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Default 'float32'. */
  storage?: TableStorage;
  /** Names the table in checkpoints and optimizer state (default 'table'). */
  name?: string;
}

const STORAGE_DTYPE: Record<TableStorage, SafetensorsDtype> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const DTYPE_STORAGE: Partial<Record<SafetensorsDtype, TableStorage>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`ExpertTable: ${what} must be a positive integer, got ${value}`);
}

/** The wasm engine's hooks for writing a tensor's values straight into its heap. */
interface WasmOutputBackend {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

function wasmOutputBackend(): WasmOutputBackend | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as unknown as Partial<WasmOutputBackend>;
  return typeof backend.makeOutput === 'function' && typeof backend.typedArrayFromHeap === 'function' ? (backend as WasmOutputBackend) : undefined;
}

export class ExpertTable {
  readonly rows: number;
  readonly dim: number;
  readonly name: string;
  readonly init: TableInit;
  readonly seed: number;
  private f32: Float32Array | undefined;
  private half: Uint16Array | undefined;
  private kind: TableStorage;
  private disposed = false;

  constructor(options: ExpertTableOptions) {
    const { rows, dim } = options;
    checkCount('rows', rows);
    checkCount('dim', dim);
    this.rows = rows;
    this.dim = dim;
    this.name = options.name ?? 'table';
    if (this.name.length === 0) throw new Error('ExpertTable: name must be a non-empty string');
    this.seed = options.seed ?? 0;
    if (!Number.isInteger(this.seed)) throw new Error(`ExpertTable: seed must be an integer, got ${this.seed}`);
    this.init = options.init ?? { kind: 'normal', std: 1 / Math.sqrt(dim) };
    const storage = options.storage ?? 'float32';
    if (!(storage in STORAGE_DTYPE)) throw new Error(`ExpertTable: storage must be 'float32', 'float16' or 'bfloat16', got ${JSON.stringify(storage)}`);
    this.kind = 'float32';
    this.f32 = new Float32Array(rows * dim);
    const init = this.init;
    if (init.kind === 'normal') {
      if (!(init.std >= 0) || !Number.isFinite(init.std)) throw new Error(`ExpertTable: init.std must be a finite number >= 0, got ${init.std}`);
      if (init.std > 0) fillNormalSeeded(this.f32, new Rng(this.seed), init.std);
    } else if (init.kind === 'uniform') {
      if (!(init.limit >= 0) || !Number.isFinite(init.limit)) throw new Error(`ExpertTable: init.limit must be a finite number >= 0, got ${init.limit}`);
      if (init.limit > 0) fillUniformSeeded(this.f32, new Rng(this.seed), -init.limit, init.limit);
    } else if (init.kind !== 'zeros') {
      throw new Error(`ExpertTable: init.kind must be 'normal', 'uniform' or 'zeros', got ${JSON.stringify((init as { kind: unknown }).kind)}`);
    }
    if (storage !== 'float32') this.toStorage(storage);
  }

  /** A float32 table holding `entry` ([rows, dim], F32/F16/BF16), stored as `storage` (default: as in the entry). */
  static fromEntry(entry: NamedArray, options: { name?: string; storage?: TableStorage } = {}): ExpertTable {
    if (entry.shape.length !== 2) throw new Error(`ExpertTable.fromEntry: entry '${entry.name}' has shape ${JSON.stringify(entry.shape)}, expected [rows, dim]`);
    const [rows, dim] = entry.shape as [number, number];
    const own = DTYPE_STORAGE[entry.dtype];
    if (!own) throw new Error(`ExpertTable.fromEntry: entry '${entry.name}' has dtype ${entry.dtype}, expected F32, F16 or BF16`);
    const table = new ExpertTable({ rows, dim, init: { kind: 'zeros' }, name: options.name ?? entry.name, storage: options.storage ?? own });
    table.loadStateEntries('', (n) => (n === table.name ? entry : undefined));
    return table;
  }

  private live(): void {
    if (this.disposed) throw new Error(`ExpertTable '${this.name}' is disposed`);
  }

  get storage(): TableStorage {
    return this.kind;
  }

  /** Bytes held by the rows. */
  get bytes(): number {
    return this.rows * this.dim * (this.kind === 'float32' ? 4 : 2);
  }

  /**
   * The rows, row-major [N * d], live (writes change the table). Only for float32 storage; half
   * storage is reachable through `halfData`, `row`, `gather`.
   */
  get data(): Float32Array {
    this.live();
    if (!this.f32) throw new Error(`ExpertTable '${this.name}': data is float32 only, but the table is stored as ${this.kind} (use halfData, row or gather)`);
    return this.f32;
  }

  /** Raw float16/bfloat16 bit patterns for half storage, undefined for float32. */
  get halfData(): Uint16Array | undefined {
    this.live();
    return this.half;
  }

  private checkIndex(i: number, where: string, k: number): void {
    if (!(i >= 0 && i < this.rows) || !Number.isInteger(i)) {
      throw new Error(`ExpertTable '${this.name}'.${where}: indices[${k}] = ${i} is out of range [0, ${this.rows})`);
    }
  }

  /** Row `i`: a live view for float32 storage, a float32 copy for half storage. */
  row(i: number): Float32Array {
    this.live();
    this.checkIndex(i, 'row', 0);
    const d = this.dim;
    if (this.f32) return this.f32.subarray(i * d, i * d + d);
    const bits = this.half!.subarray(i * d, i * d + d);
    return this.kind === 'float16' ? float16ToFloat32(bits) : bfloat16ToFloat32(bits);
  }

  /** Copies rows `indices` into `out` ([n * d], float32). */
  gatherInto(indices: Int32Array, out: Float32Array): Float32Array {
    this.live();
    const d = this.dim;
    const n = indices.length;
    if (out.length !== n * d) throw new Error(`ExpertTable '${this.name}'.gatherInto: out has length ${out.length}, expected ${n} x ${d} = ${n * d}`);
    for (let k = 0; k < n; k++) this.checkIndex(indices[k]!, 'gather', k);
    if (this.f32) {
      const src = this.f32;
      for (let k = 0; k < n; k++) {
        const s = indices[k]! * d;
        out.set(src.subarray(s, s + d), k * d);
      }
    } else {
      const src = this.half!;
      const widen = this.kind === 'float16' ? float16ToFloat32 : bfloat16ToFloat32;
      for (let k = 0; k < n; k++) {
        const s = indices[k]! * d;
        widen(src.subarray(s, s + d), out.subarray(k * d, k * d + d));
      }
    }
    return out;
  }

  /**
   * Rows `indices` as a float32 tensor [n, d] (no gradient flows back to the table: a layer routes
   * the gradient of the rows to a RowSparseGrad). On the wasm engine the rows are copied straight
   * into the tensor's heap memory, one copy in all.
   */
  gather(indices: Int32Array): tf.Tensor2D {
    this.live();
    if (!(indices instanceof Int32Array)) throw new Error(`ExpertTable '${this.name}'.gather: indices must be an Int32Array, got ${(indices as object)?.constructor?.name}`);
    const n = indices.length;
    const shape: [number, number] = [n, this.dim];
    const wasm = n > 0 ? wasmOutputBackend() : undefined;
    if (wasm) {
      for (let k = 0; k < n; k++) this.checkIndex(indices[k]!, 'gather', k);
      const info = wasm.makeOutput(shape, 'float32');
      try {
        // Take the heap view after allocating: an allocation may grow the heap and detach older views.
        this.gatherInto(indices, wasm.typedArrayFromHeap(info));
      } catch (err) {
        tf.backend().disposeData(info.dataId);
        throw err;
      }
      return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor2D;
    }
    return tf.tensor2d(this.gatherInto(indices, new Float32Array(n * this.dim)), shape);
  }

  /**
   * Converts the rows to `storage` in place (float16/bfloat16 round to nearest even; widening back
   * to float32 is exact but does not restore the rounded-away bits). Returns this table.
   */
  toStorage(storage: TableStorage): this {
    this.live();
    if (storage === this.kind) return this;
    if (!(storage in STORAGE_DTYPE)) throw new Error(`ExpertTable '${this.name}'.toStorage: storage must be 'float32', 'float16' or 'bfloat16', got ${JSON.stringify(storage)}`);
    const f32 = this.f32 ?? (this.kind === 'float16' ? float16ToFloat32(this.half!) : bfloat16ToFloat32(this.half!));
    if (storage === 'float32') {
      this.f32 = f32;
      this.half = undefined;
    } else {
      this.half = storage === 'float16' ? float32ToFloat16(f32) : float32ToBFloat16(f32);
      this.f32 = undefined;
    }
    this.kind = storage;
    return this;
  }

  /** One entry `<prefix><name>` [N, d] in the storage dtype; its data is the live table memory (no copy). */
  stateEntries(prefix = ''): NamedArray[] {
    this.live();
    return [{ name: `${prefix}${this.name}`, dtype: STORAGE_DTYPE[this.kind], shape: [this.rows, this.dim], data: this.f32 ?? this.half! }];
  }

  /**
   * Restores `<prefix><name>` (F32, F16 or BF16, shape [N, d]), converting to this table's storage.
   * An array freshly read by a lazy checkpoint is taken over without a copy.
   */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.live();
    const name = `${prefix}${this.name}`;
    const entry = expectEntry(name, get(name), { shape: [this.rows, this.dim], dtypes: ['F32', 'F16', 'BF16'] });
    const from = DTYPE_STORAGE[entry.dtype]!;
    const fresh = claimFresh(entry.data);
    if (from === this.kind) {
      if (from === 'float32') {
        if (fresh) this.f32 = entry.data as Float32Array;
        else this.f32!.set(entry.data as Float32Array);
      } else if (fresh) this.half = entry.data as Uint16Array;
      else this.half!.set(entry.data as Uint16Array);
      return;
    }
    const f32 = from === 'float32' ? (entry.data as Float32Array) : from === 'float16' ? float16ToFloat32(entry.data as Uint16Array) : bfloat16ToFloat32(entry.data as Uint16Array);
    if (this.kind === 'float32') this.f32 = f32;
    else this.half = this.kind === 'float16' ? float32ToFloat16(f32) : float32ToBFloat16(f32);
  }

  /** Releases the rows; any later use throws. */
  dispose(): void {
    this.f32 = undefined;
    this.half = undefined;
    this.disposed = true;
  }
}
