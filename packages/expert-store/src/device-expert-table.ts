// The device ExpertTable: a [N, D] float32 table of rows in GPU buffers of the webgpu engine, read
// and updated only by device programs (device-programs.ts), never read back during training. Rows
// are split into row shards when one buffer could not be bound whole (the device's
// maxStorageBufferBindingSize): each program runs once per shard.
//
// Axes: N table rows, D row width, T tokens, R rows per token, L = T * R occurrences, n rows of a shard.
import * as tf from '@tensorflow/tfjs-core';
import { Rng, webgpuAdapterInfo } from '@peer/backend';
import type { ExpertTable, RowGradient, RowGradientSink, RowSelection, TableSource } from './expert-table.js';
import type { ExpertTableOptions, TableInit } from './host-expert-table.js';
import { expectEntry, type NamedArray } from './named-array.js';
import { fillNormalSeeded, fillUniformSeeded } from './seeded-fill.js';
import { bfloat16ToFloat32, float16ToFloat32 } from './half-float.js';
import { gatherProgram, rowDotsProgram, weightedRowSumProgram, type RowShard } from './device-programs.js';
import { DeviceRowGradient } from './device-row-gradient.js';

export interface DeviceExpertTableOptions extends ExpertTableOptions {
  /**
   * Largest shard in bytes (default: the device's maxStorageBufferBindingSize, or 128 MiB when the
   * engine did not report it). A table of more bytes is split into row shards.
   */
  maxShardBytes?: number;
}

/** Used when the adapter's binding limit is unknown: WebGPU's guaranteed minimum. */
const DEFAULT_SHARD_BYTES = 128 * 2 ** 20;

class DeviceSelection implements RowSelection {
  constructor(
    readonly owner: DeviceExpertTable,
    /** The caller's index tensor (any shape with tokens * perToken elements), or checked host indices (uploaded per use). */
    readonly indices: tf.Tensor | Int32Array,
    readonly tokens: number,
    readonly perToken: number,
  ) {}
}

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`DeviceExpertTable: ${what} must be a positive integer, got ${value}`);
}

/**
 * The rows of a table as shards of at most `rowsPerShard` rows, from a host array: copied, unless
 * `owned` (the caller never writes `data` again; the shards then hold views until uploaded).
 */
export function uploadShards(data: Float32Array, rows: number, dim: number, rowsPerShard: number, owned = false): RowShard[] {
  const shards: RowShard[] = [];
  for (let lo = 0; lo < rows; lo += rowsPerShard) {
    const n = Math.min(rowsPerShard, rows - lo);
    // The engine uploads lazily, keeping the array until then: it must not see later writes to `data`.
    const part = owned ? data.subarray(lo * dim, (lo + n) * dim) : data.slice(lo * dim, (lo + n) * dim);
    shards.push({ lo, n, tensor: tf.keep(tf.tensor2d(part, [n, dim])) });
  }
  return shards;
}

/** Zeroed shards shaped like `like` ([n, D] float32, or [n] int32 with `dim` 0). */
export function zeroShards(like: readonly RowShard[], dim: number, dtype: 'float32' | 'int32' = 'float32'): tf.Tensor[] {
  return like.map((s) => tf.keep(dim > 0 ? tf.zeros([s.n, dim], dtype) : tf.zeros([s.n], dtype)));
}

/** The host copy of shards' tensors as one array [N * D] (after `makeReadable` of every tensor). */
export function readShards<T extends Float32Array | Int32Array>(tensors: readonly tf.Tensor[], total: number, Ctor: new (n: number) => T, what: string): T {
  const parts = tensors.map((t) => {
    try {
      return t.dataSync() as T;
    } catch (err) {
      throw new Error(`${what}: the device values are not readable yet; await prepareState() first (${(err as Error).message.split('\n')[0]})`);
    }
  });
  if (parts.length === 1 && parts[0]!.length === total) return parts[0]!;
  const out = new Ctor(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class DeviceExpertTable implements ExpertTable {
  readonly rows: number;
  readonly dim: number;
  readonly name: string;
  readonly placement = 'device' as const;
  readonly storage = 'float32' as const;
  readonly init: TableInit;
  readonly seed: number;
  /** Rows per shard (the last one may hold fewer). */
  readonly rowsPerShard: number;
  private shardList: RowShard[];
  private disposed = false;

  constructor(options: DeviceExpertTableOptions) {
    const { rows, dim } = options;
    checkCount('rows', rows);
    checkCount('dim', dim);
    this.rows = rows;
    this.dim = dim;
    this.name = options.name ?? 'table';
    if (this.name.length === 0) throw new Error('DeviceExpertTable: name must be a non-empty string');
    this.seed = options.seed ?? 0;
    if (!Number.isInteger(this.seed)) throw new Error(`DeviceExpertTable: seed must be an integer, got ${this.seed}`);
    const storage = options.storage ?? 'float32';
    if (storage !== 'float32') {
      throw new Error(`DeviceExpertTable '${this.name}': storage must be 'float32' on the device, got ${JSON.stringify(storage)} (half storage is for host tables: use HostExpertTable)`);
    }
    if (tf.getBackend() !== 'webgpu') throw new Error(`DeviceExpertTable '${this.name}': needs the webgpu engine, the active one is ${tf.getBackend()}`);
    this.init = options.init ?? { kind: 'normal', std: 1 / Math.sqrt(dim) };
    const init = this.init;
    if (init.kind === 'normal') {
      if (!(init.std >= 0) || !Number.isFinite(init.std)) throw new Error(`DeviceExpertTable: init.std must be a finite number >= 0, got ${init.std}`);
    } else if (init.kind === 'uniform') {
      if (!(init.limit >= 0) || !Number.isFinite(init.limit)) throw new Error(`DeviceExpertTable: init.limit must be a finite number >= 0, got ${init.limit}`);
    } else if (init.kind !== 'zeros') {
      throw new Error(`DeviceExpertTable: init.kind must be 'normal', 'uniform' or 'zeros', got ${JSON.stringify((init as { kind: unknown }).kind)}`);
    }
    const maxShardBytes = options.maxShardBytes ?? webgpuAdapterInfo()?.maxStorageBufferBindingSize ?? DEFAULT_SHARD_BYTES;
    if (!(Number.isSafeInteger(maxShardBytes) && maxShardBytes >= dim * 4)) {
      throw new Error(`DeviceExpertTable '${this.name}': maxShardBytes must be an integer >= one row (${dim * 4} bytes), got ${maxShardBytes}`);
    }
    this.rowsPerShard = Math.min(rows, Math.floor(maxShardBytes / (dim * 4)));
    // The same seeded values as HostExpertTable: filled on the host, then uploaded.
    const data = new Float32Array(rows * dim);
    if (init.kind === 'normal' && init.std > 0) fillNormalSeeded(data, new Rng(this.seed), init.std);
    if (init.kind === 'uniform' && init.limit > 0) fillUniformSeeded(data, new Rng(this.seed), -init.limit, init.limit);
    this.shardList = uploadShards(data, rows, dim, this.rowsPerShard, true);
  }

  private live(): void {
    if (this.disposed) throw new Error(`DeviceExpertTable '${this.name}' is disposed`);
  }

  /** The row shards (internal: the device optimizers update them in place). */
  shards(): readonly RowShard[] {
    this.live();
    return this.shardList;
  }

  get bytes(): number {
    return this.rows * this.dim * 4;
  }

  /** Rows `indices` as a float32 tensor [L, D] (out-of-range rows read as zeros: checked here for an Int32Array). */
  gather(indices: Int32Array | tf.Tensor): tf.Tensor2D {
    this.live();
    if (indices instanceof Int32Array) {
      for (let k = 0; k < indices.length; k++) {
        const i = indices[k]!;
        if (!(i >= 0 && i < this.rows)) throw new Error(`DeviceExpertTable '${this.name}'.gather: indices[${k}] = ${i} is out of range [0, ${this.rows})`);
      }
    }
    const l = indices instanceof Int32Array ? indices.length : indices.size;
    if (l === 0) return tf.zeros([0, this.dim]);
    return tf.tidy(() => {
      const idx = this.flatIndices(indices, 'gather');
      return gatherProgram(this.shardList, idx, this.dim);
    });
  }

  /** `indices` as a [L] int32 tensor (call inside a tidy: an upload or a reshape). */
  private flatIndices(indices: tf.Tensor | Int32Array, where: string): tf.Tensor1D {
    if (indices instanceof Int32Array) return tf.tensor1d(indices, 'int32');
    if (indices.dtype !== 'int32') throw new Error(`DeviceExpertTable '${this.name}'.${where}: indices must be int32, got ${indices.dtype}`);
    return tf.reshape(indices, [indices.size]);
  }

  /**
   * The occurrences `indices` ([T * perToken], row-major [T, R]) of a mixture call: an int32 tensor
   * (any shape), kept by reference, never read: keep it alive while the selection is used. An
   * Int32Array is range-checked and copied (uploaded by each use).
   */
  select(indices: Int32Array | tf.Tensor, perToken: number): RowSelection {
    this.live();
    if (!Number.isSafeInteger(perToken) || perToken <= 0) throw new Error(`DeviceExpertTable '${this.name}'.select: perToken must be a positive integer, got ${perToken}`);
    let held: tf.Tensor | Int32Array;
    if (indices instanceof Int32Array) {
      for (let k = 0; k < indices.length; k++) {
        const i = indices[k]!;
        if (!(i >= 0 && i < this.rows)) throw new Error(`DeviceExpertTable '${this.name}'.select: indices[${k}] = ${i} is out of range [0, ${this.rows})`);
      }
      // A copy, uploaded by each use: a tensor made here would have no owner to dispose it.
      held = indices.slice();
    } else {
      if (!(indices instanceof tf.Tensor)) throw new Error(`DeviceExpertTable '${this.name}'.select: indices must be an int32 tensor or an Int32Array`);
      if (indices.dtype !== 'int32') throw new Error(`DeviceExpertTable '${this.name}'.select: indices must be int32, got ${indices.dtype}`);
      held = indices;
    }
    const l = held instanceof Int32Array ? held.length : held.size;
    if (l % perToken !== 0) throw new Error(`DeviceExpertTable '${this.name}'.select: ${l} indices are not a whole number of tokens of ${perToken} rows`);
    return new DeviceSelection(this, held, l / perToken, perToken);
  }

  private selection(s: RowSelection, where: string): DeviceSelection {
    this.live();
    if (!(s instanceof DeviceSelection) || s.owner !== this) throw new Error(`DeviceExpertTable '${this.name}'.${where}: the selection was made by another table (use this table's select)`);
    if (s.indices instanceof tf.Tensor && s.indices.isDisposed) throw new Error(`DeviceExpertTable '${this.name}'.${where}: the selection's index tensor was disposed; keep it alive while the selection is used`);
    return s;
  }

  private checkShape(where: string, t: tf.Tensor, rows: number, cols: number, what: string): void {
    if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
      throw new Error(`DeviceExpertTable '${this.name}'.${where}: ${what} is [${t.shape}], expected [${rows}, ${cols}]`);
    }
    if (t.dtype !== 'float32') throw new Error(`DeviceExpertTable '${this.name}'.${where}: ${what} must be float32, got ${t.dtype}`);
  }

  /** out[t, r] = row(e(t, r)) . x[t] for x [T, D]; returns [T, R]. */
  rowDots(selection: RowSelection, x: tf.Tensor2D): tf.Tensor2D {
    const s = this.selection(selection, 'rowDots');
    this.checkShape('rowDots', x, s.tokens, this.dim, 'x');
    if (s.tokens === 0) return tf.zeros([0, s.perToken]);
    return tf.tidy(() => rowDotsProgram(this.shardList, this.flatIndices(s.indices, 'rowDots'), x, s.perToken));
  }

  /** y[t] = sum_r weights[t, r] row(e(t, r)) for weights [T, R]; returns [T, D]. */
  weightedRowSum(selection: RowSelection, weights: tf.Tensor2D): tf.Tensor2D {
    const s = this.selection(selection, 'weightedRowSum');
    this.checkShape('weightedRowSum', weights, s.tokens, s.perToken, 'weights');
    if (s.tokens === 0) return tf.zeros([0, this.dim]);
    return tf.tidy(() => weightedRowSumProgram(this.shardList, this.flatIndices(s.indices, 'weightedRowSum'), weights, this.dim));
  }

  /**
   * grad(e) += sum_{(t, r) -> e} weights[t, r] x[t], into a gradient of this table
   * (`createGradient`): recorded now, summed on the device when the gradient is used. Other sinks
   * would need the rows on the host: refused.
   */
  accumulateRowGradients(selection: RowSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowGradientSink): void {
    const s = this.selection(selection, 'accumulateRowGradients');
    this.checkShape('accumulateRowGradients', weights, s.tokens, s.perToken, 'weights');
    this.checkShape('accumulateRowGradients', x, s.tokens, this.dim, 'x');
    if (!(into instanceof DeviceRowGradient) || into.rows !== this.rows || into.dim !== this.dim) {
      throw new Error(
        `DeviceExpertTable '${this.name}'.accumulateRowGradients: the gradient must be this table's createGradient() (a [${this.rows}, ${this.dim}] DeviceRowGradient); a host sink would need a synchronous read of the device`,
      );
    }
    tf.tidy(() => into.record(this.flatIndices(s.indices, 'accumulateRowGradients'), weights, x, s.perToken));
  }

  /** rowDots and accumulateRowGradients with the same x (two programs on the device). */
  rowDotsAndGradients(selection: RowSelection, x: tf.Tensor2D, weights: tf.Tensor2D, into: RowGradientSink): tf.Tensor2D {
    this.accumulateRowGradients(selection, weights, x, into);
    return this.rowDots(selection, x);
  }

  /** A row-sparse gradient on the device. */
  createGradient(): RowGradient & DeviceRowGradient {
    this.live();
    return new DeviceRowGradient(this);
  }

  /** Makes `stateEntries` readable: reads every shard once, asynchronously. */
  async prepareState(): Promise<void> {
    this.live();
    await Promise.all(this.shardList.map((s) => s.tensor.data()));
  }

  /** One entry `<prefix><name>` [N, D] F32, a host copy (after `await prepareState()`). */
  stateEntries(prefix = ''): NamedArray[] {
    this.live();
    const data = readShards(
      this.shardList.map((s) => s.tensor),
      this.rows * this.dim,
      Float32Array,
      `DeviceExpertTable '${this.name}'.stateEntries`,
    );
    return [{ name: `${prefix}${this.name}`, dtype: 'F32', shape: [this.rows, this.dim], data }];
  }

  private replaceRows(data: Float32Array): void {
    const old = this.shardList;
    this.shardList = uploadShards(data, this.rows, this.dim, this.rowsPerShard);
    for (const s of old) s.tensor.dispose();
  }

  /** Restores `<prefix><name>` (F32, F16 or BF16, shape [N, D]), widened to float32 and uploaded. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.live();
    const name = `${prefix}${this.name}`;
    const entry = expectEntry(name, get(name), { shape: [this.rows, this.dim], dtypes: ['F32', 'F16', 'BF16'] });
    const data =
      entry.dtype === 'F32' ? (entry.data as Float32Array) : entry.dtype === 'F16' ? float16ToFloat32(entry.data as Uint16Array) : bfloat16ToFloat32(entry.data as Uint16Array);
    this.replaceRows(data);
  }

  /** Restores `<prefix><name>` from a file source, one shard at a time. */
  restoreFrom(prefix: string, source: TableSource): void {
    this.live();
    const name = `${prefix}${this.name}`;
    const spec = source.spec(name);
    if (!spec) throw new Error(`state entry '${name}' is missing`);
    if (!['F32', 'F16', 'BF16'].includes(spec.dtype)) throw new Error(`state entry '${name}' has dtype ${spec.dtype}, expected F32 or F16 or BF16`);
    if (spec.shape.length !== 2 || spec.shape[0] !== this.rows || spec.shape[1] !== this.dim) {
      throw new Error(`state entry '${name}' has shape ${JSON.stringify(spec.shape)}, expected ${JSON.stringify([this.rows, this.dim])}`);
    }
    const d = this.dim;
    const next: RowShard[] = [];
    try {
      for (const s of this.shardList) {
        let rows: Float32Array;
        if (spec.dtype === 'F32') {
          rows = new Float32Array(s.n * d);
          source.readInto(name, rows, s.lo * d);
        } else {
          const bits = new Uint16Array(s.n * d);
          source.readInto(name, bits, s.lo * d);
          rows = spec.dtype === 'F16' ? float16ToFloat32(bits) : bfloat16ToFloat32(bits);
        }
        next.push({ lo: s.lo, n: s.n, tensor: tf.keep(tf.tensor2d(rows, [s.n, d])) });
      }
    } catch (err) {
      for (const s of next) s.tensor.dispose();
      throw err;
    }
    for (const s of this.shardList) s.tensor.dispose();
    this.shardList = next;
  }

  /** Releases the device buffers; any later use throws. */
  dispose(): void {
    if (this.disposed) return;
    for (const s of this.shardList) s.tensor.dispose();
    this.shardList = [];
    this.disposed = true;
  }
}
