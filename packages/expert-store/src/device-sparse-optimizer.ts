// The lazy sparse optimizers of device tables: the same updates, options and state entries as
// SparseAdam / SparseSgd (names, shapes, dtypes), so that a checkpoint written from either engine
// loads into the other. Every update runs on the device: per row shard, in-place programs update
// the step counts, then the moments, then the rows, of the slots of the summed gradient (unused
// slots, row -1, touch nothing). Clipping scales the gradient by a device scalar, never read back.
//
// Axes: N table rows, D row width, U slots of the summed gradient, n rows of a shard.
import * as tf from '@tensorflow/tfjs-core';
import type { ExpertTable, RowGradient } from './expert-table.js';
import { DeviceExpertTable, readShards, uploadShards, zeroShards } from './device-expert-table.js';
import { DeviceRowGradient, type SummedRows } from './device-row-gradient.js';
import { adamRowsProgram, countStepsProgram, momentProgram, sgdRowsProgram, type RowShard } from './device-programs.js';
import { expectEntry, type NamedArray } from './named-array.js';
import { checkNonNegative, checkOptimizerOptions, type SparseOptimizerOptions, type SparseStepResult } from './sparse-optimizer.js';
import type { SparseAdamOptions } from './sparse-adam.js';
import type { SparseSgdOptions } from './sparse-sgd.js';

function deviceTable(table: ExpertTable, owner: string): DeviceExpertTable {
  if (!(table instanceof DeviceExpertTable)) throw new Error(`${owner}: table '${table.name}' is not a device table; its optimizer runs where the table lives (use createSparseOptimizer)`);
  return table;
}

/** Shard tensors of one state slot as host arrays, or uploaded from one entry. */
function shardsFromEntry(table: DeviceExpertTable, data: Float32Array | Int32Array, dim: number): tf.Tensor[] {
  if (data instanceof Float32Array) return uploadShards(data, table.rows, dim, table.rowsPerShard).map((s) => s.tensor);
  return table.shards().map((s) => tf.keep(tf.tensor1d(data.slice(s.lo, s.lo + s.n), 'int32')));
}

/** Shared bookkeeping of the device optimizers: per-table state, clipping, validation, state entries. */
export abstract class DeviceSparseOptimizer<State extends Record<string, tf.Tensor[]>> {
  readonly placement = 'device' as const;
  lr: number;
  readonly weightDecay: number;
  readonly clipNorm: number | undefined;
  protected readonly states = new Map<DeviceExpertTable, State>();
  // Subclass fields are not set yet while the base constructor runs: tables given to the
  // constructor are tracked on first use.
  private pendingTables: DeviceExpertTable[];

  constructor(options: SparseOptimizerOptions, tables: readonly ExpertTable[] = []) {
    checkOptimizerOptions(new.target.name, options);
    this.lr = options.lr;
    this.weightDecay = options.weightDecay ?? 0;
    this.clipNorm = options.clipNorm;
    this.pendingTables = tables.map((t) => deviceTable(t, new.target.name));
  }

  protected abstract createState(table: DeviceExpertTable): State;
  protected abstract applyRows(table: DeviceExpertTable, state: State, summed: SummedRows, lr: number, scale: tf.Tensor1D): void;
  /** Entry names, shapes and dtypes of each state slot, as the host optimizer writes them. */
  protected abstract entrySpecs(table: DeviceExpertTable, prefix: string): Array<{ slot: keyof State & string; name: string; dtype: 'F32' | 'I32'; shape: number[] }>;

  private flushPending(): void {
    if (this.pendingTables.length === 0) return;
    const tables = this.pendingTables;
    this.pendingTables = [];
    this.track(...tables);
  }

  /** Registers tables (state is allocated now), so that `loadStateEntries` knows them before any step. */
  track(...tables: ExpertTable[]): this {
    this.flushPending();
    for (const table of tables) this.stateFor(deviceTable(table, this.constructor.name), 'track');
    return this;
  }

  /** The tables this optimizer keeps state for. */
  tables(): DeviceExpertTable[] {
    this.flushPending();
    return [...this.states.keys()];
  }

  /** The state tensors of `table` by slot, one per row shard (internal; undefined if untracked). */
  stateOf(table: ExpertTable): Readonly<State> | undefined {
    this.flushPending();
    return table instanceof DeviceExpertTable ? this.states.get(table) : undefined;
  }

  private stateFor(table: DeviceExpertTable, where: string): State {
    const existing = this.states.get(table);
    if (existing) return existing;
    for (const other of this.states.keys()) {
      if (other.name === table.name) throw new Error(`${this.constructor.name}.${where}: two tables are named '${table.name}'; give tables distinct names (their state entries are named after them)`);
    }
    const state = this.createState(table);
    this.states.set(table, state);
    return state;
  }

  /**
   * Applies `grad` to the rows of `table` it touched, then clears `grad`; all on the device. The
   * result's `rows` is NaN and `gradNorm` undefined (reading them would stall the device).
   */
  step(table: ExpertTable, grad: RowGradient, lrScale = 1): SparseStepResult {
    this.flushPending();
    const owner = this.constructor.name;
    const dev = deviceTable(table, owner);
    if (!(grad instanceof DeviceRowGradient)) throw new Error(`${owner}.step: the gradient of device table '${table.name}' must be a DeviceRowGradient (table.createGradient())`);
    if (grad.rows !== table.rows || grad.dim !== table.dim) {
      throw new Error(`${owner}.step: gradient is [${grad.rows}, ${grad.dim}] but table '${table.name}' is [${table.rows}, ${table.dim}]`);
    }
    if (!(Number.isFinite(lrScale) && lrScale >= 0)) throw new Error(`${owner}.step: lrScale must be a finite number >= 0, got ${lrScale}`);
    const state = this.stateFor(dev, 'step');
    const summed = grad.summedRows();
    if (summed) {
      const clip = this.clipNorm;
      const scale = tf.tidy(() => {
        if (clip === undefined) return tf.ones([1]) as tf.Tensor1D;
        const norm = tf.sqrt(tf.sum(tf.square(summed.grads)));
        // As on the host: scaled only when the norm exceeds clipNorm.
        return tf.reshape(tf.where(tf.greater(norm, clip), tf.div(clip, norm), tf.scalar(1)), [1]) as tf.Tensor1D;
      });
      try {
        this.applyRows(dev, state, summed, this.lr * lrScale, scale);
      } finally {
        scale.dispose();
      }
    }
    grad.clear();
    return { rows: NaN, gradNorm: undefined, clipScale: this.clipNorm === undefined ? 1 : NaN };
  }

  /** Makes `stateEntries` readable: reads every state tensor once, asynchronously. */
  async prepareState(): Promise<void> {
    this.flushPending();
    const reads: Array<Promise<unknown>> = [];
    for (const state of this.states.values()) for (const slot of Object.values(state)) for (const t of slot) reads.push(t.data());
    await Promise.all(reads);
  }

  /** Optimizer state of every tracked table, named as the host optimizers name it (host copies, after `await prepareState()`). */
  stateEntries(prefix = ''): NamedArray[] {
    this.flushPending();
    const out: NamedArray[] = [];
    for (const [table, state] of this.states) {
      for (const spec of this.entrySpecs(table, prefix)) {
        const total = spec.shape.reduce((a, b) => a * b, 1);
        const what = `${this.constructor.name}.stateEntries`;
        const data = spec.dtype === 'F32' ? readShards(state[spec.slot]!, total, Float32Array, what) : readShards(state[spec.slot]!, total, Int32Array, what);
        out.push({ name: spec.name, dtype: spec.dtype, shape: spec.shape, data });
      }
    }
    return out;
  }

  /** Restores the state of every tracked table; every entry is checked before anything changes. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.flushPending();
    if (this.states.size === 0) {
      throw new Error(`${this.constructor.name}.loadStateEntries: no tables are tracked; pass them to the constructor or call track(table) first`);
    }
    const planned: Array<{ state: State; slot: keyof State & string; tensors: tf.Tensor[] }> = [];
    const checked = [...this.states].map(([table, state]) => ({
      table,
      state,
      entries: this.entrySpecs(table, prefix).map((spec) => ({ spec, entry: expectEntry(spec.name, get(spec.name), { shape: spec.shape, dtypes: [spec.dtype] }) })),
    }));
    for (const { table, state, entries } of checked) {
      for (const { spec, entry } of entries) {
        planned.push({ state, slot: spec.slot, tensors: shardsFromEntry(table, entry.data as Float32Array | Int32Array, spec.shape[1] ?? 0) });
      }
    }
    for (const { state, slot, tensors } of planned) {
      tf.dispose(state[slot]);
      (state as Record<string, tf.Tensor[]>)[slot] = tensors;
    }
  }

  /** Drops all state (releases its device buffers). */
  dispose(): void {
    for (const state of this.states.values()) for (const slot of Object.values(state)) tf.dispose(slot);
    this.states.clear();
    this.pendingTables = [];
  }
}

type AdamSlots = { m: tf.Tensor[]; v: tf.Tensor[]; steps: tf.Tensor[] };

/** Lazy AdamW of device tables; the semantics, options and state entries of SparseAdam. */
export class DeviceSparseAdam extends DeviceSparseOptimizer<AdamSlots> {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;

  constructor(options: SparseAdamOptions, tables: readonly ExpertTable[] = []) {
    super(options, tables);
    const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = options;
    for (const [what, value] of [['beta1', beta1], ['beta2', beta2]] as const) {
      if (!(value >= 0 && value < 1)) throw new Error(`DeviceSparseAdam: ${what} must be in [0, 1), got ${value}`);
    }
    checkNonNegative('DeviceSparseAdam', 'eps', eps);
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
  }

  protected createState(table: DeviceExpertTable): AdamSlots {
    const shards = table.shards();
    return { m: zeroShards(shards, table.dim), v: zeroShards(shards, table.dim), steps: zeroShards(shards, 0, 'int32') };
  }

  protected applyRows(table: DeviceExpertTable, state: AdamSlots, summed: SummedRows, lr: number, scale: tf.Tensor1D): void {
    const args = { lr, decay: 1 - lr * this.weightDecay, eps: this.eps, lnBeta1: Math.log(this.beta1), lnBeta2: Math.log(this.beta2) };
    table.shards().forEach((shard: RowShard, i) => {
      const [m, v, steps] = [state.m[i] as tf.Tensor2D, state.v[i] as tf.Tensor2D, state.steps[i] as tf.Tensor1D];
      countStepsProgram(shard, steps, summed.slotRows);
      momentProgram(shard, m, summed.slotRows, summed.grads, scale, this.beta1, 1 - this.beta1, false);
      momentProgram(shard, v, summed.slotRows, summed.grads, scale, this.beta2, 1 - this.beta2, true);
      adamRowsProgram(shard, summed.slotRows, m, v, steps, table.dim, args);
    });
  }

  protected entrySpecs(table: DeviceExpertTable, prefix: string): Array<{ slot: keyof AdamSlots; name: string; dtype: 'F32' | 'I32'; shape: number[] }> {
    const base = `${prefix}${table.name}.adam`;
    return [
      { slot: 'm', name: `${base}.m`, dtype: 'F32', shape: [table.rows, table.dim] },
      { slot: 'v', name: `${base}.v`, dtype: 'F32', shape: [table.rows, table.dim] },
      { slot: 'steps', name: `${base}.steps`, dtype: 'I32', shape: [table.rows] },
    ];
  }
}

type SgdSlots = { momentum: tf.Tensor[] };

/** Lazy SGD (optionally with momentum) of device tables; the semantics, options and state entries of SparseSgd. */
export class DeviceSparseSgd extends DeviceSparseOptimizer<SgdSlots> {
  readonly momentum: number;

  constructor(options: SparseSgdOptions, tables: readonly ExpertTable[] = []) {
    super(options, tables);
    const momentum = options.momentum ?? 0;
    if (!(momentum >= 0 && momentum < 1)) throw new Error(`DeviceSparseSgd: momentum must be in [0, 1), got ${momentum}`);
    this.momentum = momentum;
  }

  protected createState(table: DeviceExpertTable): SgdSlots {
    return { momentum: this.momentum > 0 ? zeroShards(table.shards(), table.dim) : [] };
  }

  protected applyRows(table: DeviceExpertTable, state: SgdSlots, summed: SummedRows, lr: number, scale: tf.Tensor1D): void {
    const decay = 1 - lr * this.weightDecay;
    table.shards().forEach((shard, i) => {
      const b = this.momentum > 0 ? (state.momentum[i] as tf.Tensor2D) : undefined;
      if (b) momentProgram(shard, b, summed.slotRows, summed.grads, scale, this.momentum, 1, false);
      sgdRowsProgram(shard, summed.slotRows, summed.grads, scale, b, lr, decay);
    });
  }

  protected entrySpecs(table: DeviceExpertTable, prefix: string): Array<{ slot: keyof SgdSlots; name: string; dtype: 'F32' | 'I32'; shape: number[] }> {
    return this.momentum > 0 ? [{ slot: 'momentum', name: `${prefix}${table.name}.sgd.momentum`, dtype: 'F32', shape: [table.rows, table.dim] }] : [];
  }
}
