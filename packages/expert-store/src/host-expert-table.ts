// The host-memory ExpertTable: a [N, D] table of expert (or memory-slot) vectors held outside the
// tfjs heap: N = 1024^2 rows of D = 256 is 1 GiB, and two tables with Adam moments are 6 GiB, past
// what the wasm heap (wasm32, 4 GiB) can hold. Float32 rows live in the table's own arena when they
// fit (SIMD kernels update and read them in place), else in a plain array.
//
// Axes: N rows (experts), D row width, L looked-up rows.
import * as tf from '@tensorflow/tfjs-core';
import { onDevice, Rng } from '@peer/backend';
import { Arena, engineHeap, MAX_ARENA_BYTES } from '@peer/backend/wasm';
import type { ExpertTable, RowGradientSink, RowSelection, TableStorage } from './expert-table.js';
import { HostBlock } from './host-block.js';
import { GATHERED_READ_MIN_TABLE_BYTES, HostMixture, MIXTURE_SCRATCH_BYTES } from './host-mixture.js';
import { RowSparseGrad, type RowSparseGradOptions } from './row-sparse-grad.js';
import { setArenaOf } from './table-arena.js';
import { gatherRows, optimizerKernels, type OptimizerKernelExports } from './wasm/optimizer-kernels.js';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBFloat16, float32ToFloat16 } from './half-float.js';
import { claimFresh, expectEntry, type NamedArray, type NamedArrayData, type NamedArraySpec, type SafetensorsDtype } from './named-array.js';
import { fillNormalSeeded, fillUniformSeeded } from './seeded-fill.js';

export type TableInit = { kind: 'normal'; std: number } | { kind: 'uniform'; limit: number } | { kind: 'zeros' };


export interface ExpertTableOptions {
  /** N, the number of rows. */
  rows: number;
  /** D, the width of a row. */
  dim: number;
  /** Default: normal with std 1/sqrt(D) (the spec's init for PEER's u and v). */
  init?: TableInit;
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Default 'float32'. */
  storage?: TableStorage;
  /** Names the table in checkpoints and optimizer state (default 'table'). */
  name?: string;
  /**
   * Where float32 rows live. 'arena' (what 'auto', the default, picks when it fits): a
   * WebAssembly.Memory of the table's own, with room reserved for optimizer state and gradient
   * slots, so that SIMD kernels update rows in place; 4 GiB at most (rows, optimizer state and
   * gradient slots together). 'plain': an ordinary Float32Array (any size; JS kernels).
   */
  backing?: 'auto' | 'arena' | 'plain';
  /**
   * Float32 values per table element to reserve in the arena for optimizer state (default 2,
   * Adam's two moments). Reserved address space costs no memory until used.
   */
  reserveStateSlots?: number;
  /** Gradient slots (rows) to reserve in the arena (default min(rows, 65536)). */
  reserveGradRows?: number;
}

const STORAGE_DTYPE: Record<TableStorage, SafetensorsDtype> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const DTYPE_STORAGE: Partial<Record<SafetensorsDtype, TableStorage>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`ExpertTable: ${what} must be a positive integer, got ${value}`);
}

/**
 * Bytes of the gather staging block: small enough to stay in the L2 cache and below the arena's
 * stagger threshold; 512 rows of D = 256 per chunk.
 */
const GATHER_STAGING_BYTES = 512 * 1024;

export class HostExpertTable implements ExpertTable {
  readonly rows: number;
  readonly dim: number;
  readonly name: string;
  readonly placement = 'host' as const;
  readonly init: TableInit;
  readonly seed: number;
  /** The float32 rows (in the arena or plain), undefined for half storage. */
  private f32Rows: HostBlock<Float32Array> | undefined;
  private half: Uint16Array | undefined;
  private readonly backing: 'auto' | 'arena' | 'plain';
  private readonly reserveBytes: number;
  /** The arena holding the float32 rows, when they live in one. */
  private arena: Arena | undefined;
  private kind: TableStorage;
  private disposed = false;
  /** See gatherStaging; null when the arena had no room. */
  private staging: { indices: HostBlock<Int32Array>; rows: HostBlock<Float32Array> } | null | undefined;
  private mixtureKernels: HostMixture | undefined;
  /** A gradient the mixture sums into for sinks other than this table's own gradients. */
  private sinkScratch: RowSparseGrad | undefined;

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
    this.backing = options.backing ?? 'auto';
    if (!['auto', 'arena', 'plain'].includes(this.backing)) throw new Error(`ExpertTable: backing must be 'auto', 'arena' or 'plain', got ${JSON.stringify(this.backing)}`);
    const slots = options.reserveStateSlots ?? 2;
    if (!Number.isSafeInteger(slots) || slots < 0) throw new Error(`ExpertTable: reserveStateSlots must be an integer >= 0, got ${slots}`);
    const gradRows = options.reserveGradRows ?? Math.min(rows, 65536);
    if (!Number.isSafeInteger(gradRows) || gradRows < 0) throw new Error(`ExpertTable: reserveGradRows must be an integer >= 0, got ${gradRows}`);
    // rows + state slots + gradient slots (values, row ids, their order, per-row coefficients) +
    // the gather staging block and its indices + alignment and stagger slack. Allocations inside the
    // reservation never grow the memory, so views of the rows taken before a gather stay attached.
    // A large table's mixture also keeps a gathered copy of a selection's rows, one per occurrence
    // (T * R of a call: twice the gradient slots covers the layer's default token chunk at h*k = 128;
    // a larger call grows the memory).
    const gatheredBytes = rows * dim * 4 >= GATHERED_READ_MIN_TABLE_BYTES ? 2 * gradRows * (dim * 4 + 4) : 0;
    this.reserveBytes = rows * dim * 4 * (1 + slots) + gradRows * (dim * 4 + 16) + 2 * GATHER_STAGING_BYTES + MIXTURE_SCRATCH_BYTES + gatheredBytes + 65536;
    const init = this.init;
    if (init.kind === 'normal') {
      if (!(init.std >= 0) || !Number.isFinite(init.std)) throw new Error(`ExpertTable: init.std must be a finite number >= 0, got ${init.std}`);
    } else if (init.kind === 'uniform') {
      if (!(init.limit >= 0) || !Number.isFinite(init.limit)) throw new Error(`ExpertTable: init.limit must be a finite number >= 0, got ${init.limit}`);
    } else if (init.kind !== 'zeros') {
      throw new Error(`ExpertTable: init.kind must be 'normal', 'uniform' or 'zeros', got ${JSON.stringify((init as { kind: unknown }).kind)}`);
    }
    this.kind = 'float32';
    const data = this.allocateFloat32();
    if (init.kind === 'normal' && init.std > 0) fillNormalSeeded(data, new Rng(this.seed), init.std);
    if (init.kind === 'uniform' && init.limit > 0) fillUniformSeeded(data, new Rng(this.seed), -init.limit, init.limit);
    if (storage !== 'float32') this.toStorage(storage);
  }

  /** Zeroed float32 rows in an arena (when backing allows and it fits) or a plain array. */
  private allocateFloat32(): Float32Array {
    const size = this.rows * this.dim;
    this.staging = undefined;
    this.mixtureKernels = undefined;
    this.sinkScratch = undefined;
    if (this.backing !== 'plain') {
      // An arena only where the SIMD kernels can run in it.
      const arena = this.reserveBytes <= MAX_ARENA_BYTES ? Arena.create(this.reserveBytes) : undefined;
      const rows = arena && optimizerKernels(arena.memory) ? HostBlock.allocInArena(arena, size, Float32Array) : undefined;
      if (arena && rows) {
        this.setArena(arena);
        this.f32Rows = rows;
        return rows.array;
      }
      if (this.backing === 'arena') {
        throw new Error(
          `ExpertTable '${this.name}': backing 'arena' needs ${(this.reserveBytes / 2 ** 30).toFixed(2)} GiB of wasm memory (4 GiB at most, and WebAssembly SIMD); use backing 'plain' or 'auto', or reserve fewer state slots`,
        );
      }
    }
    this.setArena(undefined);
    try {
      this.f32Rows = HostBlock.plain(new Float32Array(size));
    } catch (err) {
      throw new Error(`ExpertTable '${this.name}': cannot allocate ${this.rows} x ${this.dim} float32 rows (${(size * 4 / 2 ** 30).toFixed(2)} GiB): ${(err as Error).message}`);
    }
    return this.f32Rows.array;
  }

  private setArena(arena: Arena | undefined): void {
    this.arena = arena;
    setArenaOf(this, arena);
  }

  /** The float32 rows, live, if stored as float32. */
  private get f32(): Float32Array | undefined {
    return this.f32Rows?.array;
  }

  /** A float32 table holding `entry` ([rows, dim], F32/F16/BF16), stored as `storage` (default: as in the entry). */
  static fromEntry(entry: NamedArray, options: { name?: string; storage?: TableStorage } = {}): HostExpertTable {
    if (entry.shape.length !== 2) throw new Error(`ExpertTable.fromEntry: entry '${entry.name}' has shape ${JSON.stringify(entry.shape)}, expected [rows, dim]`);
    const [rows, dim] = entry.shape as [number, number];
    const own = DTYPE_STORAGE[entry.dtype];
    if (!own) throw new Error(`ExpertTable.fromEntry: entry '${entry.name}' has dtype ${entry.dtype}, expected F32, F16 or BF16`);
    const table = new HostExpertTable({ rows, dim, init: { kind: 'zeros' }, name: options.name ?? entry.name, storage: options.storage ?? own });
    table.loadStateEntries('', (n) => (n === table.name ? entry : undefined));
    return table;
  }

  private live(): void {
    if (this.disposed) throw new Error(`ExpertTable '${this.name}' is disposed`);
  }

  get storage(): TableStorage {
    return this.kind;
  }

  /** Where the float32 rows live: 'arena' (SIMD optimizer kernels), 'plain', or 'half' for float16/bfloat16 storage. */
  get backingKind(): 'arena' | 'plain' | 'half' {
    return !this.f32Rows ? 'half' : this.arena ? 'arena' : 'plain';
  }

  /** Bytes held by the rows. */
  get bytes(): number {
    return this.rows * this.dim * (this.kind === 'float32' ? 4 : 2);
  }

  /**
   * The rows, row-major [N * D], live (writes change the table). Only for float32 storage; half
   * storage is reachable through `halfData`, `row`, `gather`. Read it when needed rather than keeping
   * it: an arena that grows (rare: a gradient with more rows than reserved) detaches older views.
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

  /** Copies rows `indices` into `out` ([L * D], float32). */
  gatherInto(indices: Int32Array, out: Float32Array): Float32Array {
    this.live();
    const d = this.dim;
    const n = indices.length;
    if (out.length !== n * d) throw new Error(`ExpertTable '${this.name}'.gatherInto: out has length ${out.length}, expected ${n} x ${d} = ${n * d}`);
    for (let k = 0; k < n; k++) this.checkIndex(indices[k]!, 'gather', k);
    return this.copyRows(indices, out);
  }

  /** Row copies without checks (indices already validated). */
  private copyRows(indices: Int32Array, out: Float32Array): Float32Array {
    const d = this.dim;
    const n = indices.length;
    const arena = this.arena;
    const staging = arena && n > 0 ? this.gatherStaging() : undefined;
    if (arena && staging) {
      // The arena's gather kernel copies each chunk of rows into a staging block of the arena, and
      // one `set` moves the chunk out: faster than a `set` per row on large tables (expert-store README).
      const chunk = staging.rows.length / d;
      for (let start = 0; start < n; start += chunk) {
        const count = Math.min(chunk, n - start);
        staging.indices.array.set(indices.subarray(start, start + count));
        gatherRows(arena, count, staging.indices.offsetIn(arena)!, this.f32Rows!.offsetIn(arena)!, staging.rows.offsetIn(arena)!, d * 4);
        out.set(staging.rows.array.subarray(0, count * d), start * d);
      }
    } else if (this.f32) {
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
   * Rows `indices` as a float32 tensor [L, D] (no gradient flows back to the table: a layer routes
   * the gradient of the rows to a RowSparseGrad). On the wasm engine the rows are copied straight
   * into the tensor's heap memory, one copy in all.
   */
  gather(indices: Int32Array): tf.Tensor2D {
    this.live();
    if (!(indices instanceof Int32Array)) throw new Error(`ExpertTable '${this.name}'.gather: indices must be an Int32Array, got ${(indices as object)?.constructor?.name}`);
    const n = indices.length;
    const shape: [number, number] = [n, this.dim];
    const heap = n > 0 ? engineHeap() : undefined;
    if (heap) {
      for (let k = 0; k < n; k++) this.checkIndex(indices[k]!, 'gather', k);
      const out = heap.output(shape, 'float32');
      try {
        // Take the heap view after allocating: an allocation may grow the heap and detach older views.
        this.copyRows(indices, heap.floats(out));
      } catch (err) {
        out.dispose();
        throw err;
      }
      return out as tf.Tensor2D;
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
    if (storage === 'float32') {
      const half = this.half!;
      const widen = this.kind === 'float16' ? float16ToFloat32 : bfloat16ToFloat32;
      widen(half, this.allocateFloat32());
      this.half = undefined;
    } else {
      this.half = storage === 'float16' ? float32ToFloat16(this.f32!) : float32ToBFloat16(this.f32!);
      this.f32Rows = undefined;
      this.setArena(undefined);
      this.staging = undefined;
      this.mixtureKernels = undefined;
      // Its slots live in the arena just dropped.
      this.sinkScratch = undefined;
    }
    this.kind = storage;
    return this;
  }

  /** Nothing to prepare: host rows are readable at any time. */
  prepareState(): Promise<void> {
    return Promise.resolve();
  }

  /** One entry `<prefix><name>` [N, D] in the storage dtype; its data is the live table memory (no copy). */
  stateEntries(prefix = ''): NamedArray[] {
    this.live();
    return [{ name: `${prefix}${this.name}`, dtype: STORAGE_DTYPE[this.kind], shape: [this.rows, this.dim], data: this.f32 ?? this.half! }];
  }

  /**
   * Restores `<prefix><name>` straight from a file source (a lazy `Checkpoint`, or anything with
   * `spec` and `readInto`), in chunks: peak memory is the table plus one chunk, never two tables.
   * Converts F32/F16/BF16 to this table's storage.
   */
  restoreFrom(prefix: string, source: { spec(name: string): NamedArraySpec | undefined; readInto(name: string, out: NamedArrayData, start?: number): void }): void {
    this.live();
    this.rowsChanged();
    const name = `${prefix}${this.name}`;
    const spec = source.spec(name);
    if (!spec) throw new Error(`state entry '${name}' is missing`);
    if (!['F32', 'F16', 'BF16'].includes(spec.dtype)) throw new Error(`state entry '${name}' has dtype ${spec.dtype}, expected F32 or F16 or BF16`);
    if (spec.shape.length !== 2 || spec.shape[0] !== this.rows || spec.shape[1] !== this.dim) {
      throw new Error(`state entry '${name}' has shape ${JSON.stringify(spec.shape)}, expected ${JSON.stringify([this.rows, this.dim])}`);
    }
    const from = DTYPE_STORAGE[spec.dtype]!;
    const total = this.rows * this.dim;
    if (from === this.kind) {
      source.readInto(name, this.f32 ?? this.half!, 0);
      return;
    }
    const chunk = Math.min(total, 1 << 22);
    const scratch = from === 'float32' ? new Float32Array(chunk) : new Uint16Array(chunk);
    for (let start = 0; start < total; start += chunk) {
      const n = Math.min(chunk, total - start);
      const part = scratch.subarray(0, n);
      source.readInto(name, part, start);
      if (this.kind === 'float32') {
        (from === 'float16' ? float16ToFloat32 : bfloat16ToFloat32)(part as Uint16Array, this.f32!.subarray(start, start + n));
      } else {
        const f32 = from === 'float32' ? (part as Float32Array) : (from === 'float16' ? float16ToFloat32 : bfloat16ToFloat32)(part as Uint16Array);
        (this.kind === 'float16' ? float32ToFloat16 : float32ToBFloat16)(f32, this.half!.subarray(start, start + n));
      }
    }
  }

  /**
   * Restores `<prefix><name>` (F32, F16 or BF16, shape [N, D]), converting to this table's storage.
   * An array freshly read by a lazy checkpoint is taken over without a copy by a plain table.
   */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.rowsChanged();
    this.live();
    const name = `${prefix}${this.name}`;
    const entry = expectEntry(name, get(name), { shape: [this.rows, this.dim], dtypes: ['F32', 'F16', 'BF16'] });
    const from = DTYPE_STORAGE[entry.dtype]!;
    const fresh = claimFresh(entry.data);
    if (this.kind === 'float32') {
      // Arena rows are copied into; a plain table takes over an array read freshly for it.
      if (from === 'float32') this.f32Rows!.take(entry.data as Float32Array, fresh);
      else (from === 'float16' ? float16ToFloat32 : bfloat16ToFloat32)(entry.data as Uint16Array, this.f32!);
      return;
    }
    if (from === this.kind) {
      if (fresh) this.half = entry.data as Uint16Array;
      else this.half!.set(entry.data as Uint16Array);
      return;
    }
    const f32 = from === 'float32' ? (entry.data as Float32Array) : from === 'float16' ? float16ToFloat32(entry.data as Uint16Array) : bfloat16ToFloat32(entry.data as Uint16Array);
    this.half = this.kind === 'float16' ? float32ToFloat16(f32) : float32ToBFloat16(f32);
  }

  /** The arena block the gather kernel copies into (allocated on first use; under 1 MiB). */
  private gatherStaging(): { indices: HostBlock<Int32Array>; rows: HostBlock<Float32Array> } | undefined {
    if (this.staging === undefined) {
      const rows = Math.max(1, Math.floor(GATHER_STAGING_BYTES / (this.dim * 4)));
      const indices = HostBlock.allocInArena(this.arena!, rows, Int32Array);
      const block = indices ? HostBlock.allocInArena(this.arena!, rows * this.dim, Float32Array) : undefined;
      this.staging = indices && block ? { indices, rows: block } : null;
    }
    return this.staging ?? undefined;
  }

  /** Releases the rows; any later use throws. */
  dispose(): void {
    this.f32Rows = undefined;
    this.setArena(undefined);
    this.mixtureKernels = undefined;
    this.sinkScratch = undefined;
    this.staging = undefined;
    this.half = undefined;
    this.disposed = true;
  }

  /** The SIMD optimizer and gather kernels on this table's arena (internal to the expert store). */
  optimizerKernels(): OptimizerKernelExports | undefined {
    return this.arena ? optimizerKernels(this.arena.memory) : undefined;
  }

  /** Byte offset of the rows in `arena` when they live there (internal: for the SIMD kernels). */
  rowsOffsetIn(arena: Arena | undefined): number | undefined {
    return this.f32Rows?.offsetIn(arena);
  }

  /** A row-sparse gradient for this table, kept in its arena when it has one. */
  createGradient(options: RowSparseGradOptions = {}): RowSparseGrad {
    return new RowSparseGrad(this, options);
  }

  /**
   * Drops what the mixture keeps of the rows between a selection's forward and backward pass
   * (internal: the optimizers and loads call it; call it after writing rows through `data` between
   * the two passes of one selection).
   */
  rowsChanged(): void {
    this.mixtureKernels?.rowsChanged();
  }

  private mixture(): HostMixture {
    this.live();
    const arena = this.arena;
    return (this.mixtureKernels ??= new HostMixture(
      this.rows,
      this.dim,
      arena,
      () => this.f32Rows,
      (indices, out) => this.copyRows(indices, out),
      arena && this.optimizerKernels() ? (count, indicesAt, rowsAt, outAt, rowBytes) => gatherRows(arena, count, indicesAt, rowsAt, outAt, rowBytes) : undefined,
    ));
  }

  /** The occurrences `indices` ([T * perToken] table rows) of a mixture call (checked here once). */
  select(indices: Int32Array | tf.Tensor, perToken: number): RowSelection {
    const rows = indices instanceof Int32Array ? indices : hostIndices(indices, this.name);
    return this.mixture().select(rows, perToken, this.name);
  }

  /** out[t, r] = row(e(t, r)) . x[t] for x [T, D]; returns [T, R]. */
  rowDots(selection: RowSelection, x: tf.Tensor2D): tf.Tensor2D {
    return this.mixture().rowDots(selection, x);
  }

  /** y[t] = sum_r weights[t, r] row(e(t, r)) for weights [T, R]; returns [T, D]. */
  weightedRowSum(selection: RowSelection, weights: tf.Tensor2D): tf.Tensor2D {
    return this.mixture().weightedRowSum(selection, weights);
  }

  /** rowDots and accumulateRowGradients with the same x (one pass over the rows for this table's own gradients). */
  rowDotsAndGradients(selection: RowSelection, x: tf.Tensor2D, weights: tf.Tensor2D, into: RowGradientSink): tf.Tensor2D {
    if (this.ownsGradient(into)) return this.mixture().rowDotsAndGradients(selection, x, weights, into);
    this.accumulateRowGradients(selection, weights, x, into);
    return this.rowDots(selection, x);
  }

  /** Whether `into` is a gradient of this table's shape, which the mixture sums into directly. */
  private ownsGradient(into: RowGradientSink): into is RowSparseGrad {
    return into instanceof RowSparseGrad && into.rows === this.rows && into.dim === this.dim;
  }

  /** Adds grad(row e) += sum_{(t, r) -> e} weights[t, r] x[t] to `into` for x [T, D]. */
  accumulateRowGradients(selection: RowSelection, weights: tf.Tensor2D, x: tf.Tensor2D, into: RowGradientSink): void {
    const mixture = this.mixture();
    if (this.ownsGradient(into)) {
      mixture.accumulateRowGradients(selection, weights, x, into);
      return;
    }
    // Another sink: sum into a fresh gradient of this table, then hand over its rows (ascending).
    const scratch = (this.sinkScratch ??= new RowSparseGrad(this, { initialCapacity: 1024 }));
    try {
      mixture.accumulateRowGradients(selection, weights, x, scratch);
      into.accumulate(scratch.uniqueRows(), scratch.rowGrads());
    } finally {
      // A sink that threw must not receive these gradients again with the next call's.
      scratch.clear();
    }
  }
}

function hostIndices(indices: tf.Tensor, table: string): Int32Array {
  if (indices.dtype !== 'int32') throw new Error(`${table}.select: indices must be int32, got ${indices.dtype}`);
  if (onDevice()) {
    throw new Error(`${table}.select: a host table cannot read an index tensor on the ${tf.getBackend()} engine (no synchronous reads there); make tables with createExpertTable, which gives a device table on it`);
  }
  return indices.dataSync() as Int32Array;
}
