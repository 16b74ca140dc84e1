// Optimizers for ExpertTables that update only the rows a step touched (lazy updates): a step costs
// O(U * D) for U touched rows, never O(N * D). Their learning rate and clipping are separate from
// the dense parameters' (common practice for memory tables).
//
// Axes: N table rows, D row width, U touched rows.
import type { ExpertTable, RowGradient } from './expert-table.js';
import { HostExpertTable } from './host-expert-table.js';
import { RowSparseGrad } from './row-sparse-grad.js';
import type { NamedArray } from './named-array.js';

export interface SparseOptimizerOptions {
  /** Base learning rate; `step`'s `lrScale` multiplies it (the schedule's factor). */
  lr: number;
  /**
   * Decoupled weight decay (AdamW style): a touched row is multiplied by `1 - lr * weightDecay`
   * before its update. Untouched rows do not decay. Default 0.
   */
  weightDecay?: number;
  /** Clip each step's row-sparse gradient to this global L2 norm before the update. */
  clipNorm?: number;
}

export interface SparseStepResult {
  /** Rows updated (U); NaN from a device optimizer (U stays on the device). */
  rows: number;
  /** L2 norm of the gradient before clipping (computed only when `clipNorm` is set; undefined on a device). */
  gradNorm: number | undefined;
  /** Factor the gradient was multiplied by (1 when not clipped); NaN from a device optimizer with clipNorm. */
  clipScale: number;
}

export function checkNonNegative(owner: string, what: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value >= 0)) throw new Error(`${owner}: ${what} must be a finite number >= 0, got ${value}`);
}

/** Throws one clear error naming `owner` and the field for a bad lr, weightDecay or clipNorm. */
export function checkOptimizerOptions(owner: string, options: SparseOptimizerOptions): void {
  if (!(Number.isFinite(options.lr) && options.lr >= 0)) throw new Error(`${owner}: lr must be a finite number >= 0, got ${options.lr}`);
  checkNonNegative(owner, 'weightDecay', options.weightDecay);
  if (options.clipNorm !== undefined && !(options.clipNorm > 0 && Number.isFinite(options.clipNorm))) {
    throw new Error(`${owner}: clipNorm must be a finite number > 0, got ${options.clipNorm}`);
  }
}

/** Shared bookkeeping: per-table state, clipping, validation, state entries. */
export abstract class SparseOptimizer<State> {
  /** These optimizers update host tables (the device ones: DeviceSparseAdam, DeviceSparseSgd). */
  readonly placement = 'host' as const;
  lr: number;
  readonly weightDecay: number;
  readonly clipNorm: number | undefined;
  protected readonly states = new Map<HostExpertTable, State>();

  constructor(options: SparseOptimizerOptions, tables: readonly ExpertTable[] = []) {
    checkOptimizerOptions(new.target.name, options);
    this.lr = options.lr;
    this.weightDecay = options.weightDecay ?? 0;
    this.clipNorm = options.clipNorm;
    this.pendingTables = tables.map((t) => hostTable(t, new.target.name));
  }

  // Subclass fields are not set yet while the base constructor runs: tables given to the
  // constructor are tracked on first use.
  private pendingTables: HostExpertTable[];

  protected abstract createState(table: HostExpertTable): State;
  protected abstract applyRows(table: HostExpertTable, state: State, grad: RowSparseGrad, lr: number, gradScale: number): void;
  protected abstract entriesOf(table: HostExpertTable, state: State, prefix: string): NamedArray[];
  protected abstract loadInto(table: HostExpertTable, state: State, prefix: string, get: (name: string) => NamedArray | undefined): void;

  private flushPending(): void {
    if (this.pendingTables.length === 0) return;
    const tables = this.pendingTables;
    this.pendingTables = [];
    this.track(...tables);
  }

  /** Registers tables (state is allocated now), so that `loadStateEntries` knows them before any step. */
  track(...tables: ExpertTable[]): this {
    this.flushPending();
    for (const table of tables) this.stateFor(hostTable(table, this.constructor.name), 'track');
    return this;
  }

  /** The state of `table`, if tracked (tables given to the constructor count as tracked). */
  protected lookup(table: ExpertTable): State | undefined {
    this.flushPending();
    return table instanceof HostExpertTable ? this.states.get(table) : undefined;
  }

  /** The tables this optimizer keeps state for. */
  tables(): HostExpertTable[] {
    this.flushPending();
    return [...this.states.keys()];
  }

  protected stateFor(table: HostExpertTable, where: string): State {
    const existing = this.states.get(table);
    if (existing) return existing;
    const owner = this.constructor.name;
    if (table.storage !== 'float32') throw new Error(`${owner}.${where}: table '${table.name}' is stored as ${table.storage}; training needs float32 storage`);
    for (const other of this.states.keys()) {
      if (other.name === table.name) throw new Error(`${owner}.${where}: two tables are named '${table.name}'; give tables distinct names (their state entries are named after them)`);
    }
    const state = this.createState(table);
    this.states.set(table, state);
    return state;
  }

  /**
   * Applies `grad` to the rows of `table` it touched, then clears `grad`. `lrScale` multiplies the
   * learning rate (e.g. a warmup/decay schedule).
   */
  step(table: ExpertTable, grad: RowGradient, lrScale = 1): SparseStepResult {
    this.flushPending();
    const owner = this.constructor.name;
    const host = hostTable(table, owner);
    if (!(grad instanceof RowSparseGrad)) throw new Error(`${owner}.step: the gradient of host table '${table.name}' must be a RowSparseGrad (table.createGradient())`);
    if (grad.rows !== table.rows || grad.dim !== table.dim) {
      throw new Error(`${owner}.step: gradient is [${grad.rows}, ${grad.dim}] but table '${table.name}' is [${table.rows}, ${table.dim}]`);
    }
    if (!(Number.isFinite(lrScale) && lrScale >= 0)) throw new Error(`${owner}.step: lrScale must be a finite number >= 0, got ${lrScale}`);
    const state = this.stateFor(host, 'step');
    let gradNorm: number | undefined;
    let clipScale = 1;
    if (this.clipNorm !== undefined) {
      gradNorm = grad.norm();
      if (gradNorm > this.clipNorm) clipScale = this.clipNorm / gradNorm;
    }
    const rows = grad.size;
    if (rows > 0) {
      this.applyRows(host, state, grad, this.lr * lrScale, clipScale);
      host.rowsChanged();
    }
    grad.clear();
    return { rows, gradNorm, clipScale };
  }

  /** Optimizer state of every tracked table, named `<prefix><table name>.<kind>.<slot>` (live views, no copy). */
  stateEntries(prefix = ''): NamedArray[] {
    this.flushPending();
    const out: NamedArray[] = [];
    for (const [table, state] of this.states) out.push(...this.entriesOf(table, state, prefix));
    return out;
  }

  /** Restores the state of every tracked table; throws naming a missing or mis-shaped entry. */
  loadStateEntries(prefix: string, get: (name: string) => NamedArray | undefined): void {
    this.flushPending();
    if (this.states.size === 0) {
      throw new Error(`${this.constructor.name}.loadStateEntries: no tables are tracked; pass them to the constructor or call track(table) first`);
    }
    for (const [table, state] of this.states) this.loadInto(table, state, prefix, get);
  }

  /** Nothing to prepare: host state is readable at any time (the device optimizers read theirs here). */
  prepareState(): Promise<void> {
    return Promise.resolve();
  }

  /** Drops all state. */
  dispose(): void {
    this.states.clear();
    this.pendingTables = [];
  }
}

/** `table` as the host table these optimizers update in place. */
function hostTable(table: ExpertTable, owner: string): HostExpertTable {
  if (!(table instanceof HostExpertTable)) throw new Error(`${owner}: table '${table.name}' is not a host-memory table; its optimizer runs where the table lives`);
  return table;
}
