// Lazy Adam / AdamW for ExpertTables: only rows touched by a step are updated, and each row keeps
// its own step count, so the bias correction of a row touched for the t-th time uses beta^t, exactly
// what dense Adam would do for a row touched every step. Untouched rows, and their moments, stay
// as they are (no decay of moments for rows a step did not see).
//
// For a touched row with summed gradient g (times the clipping scale) and step count t:
//   w <- w * (1 - lr * weightDecay)                       (decoupled, AdamW; only when weightDecay > 0)
//   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
//   w <- w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
//
// Axes: N table rows, d row width, U touched rows.
import { SparseOptimizer, checkNonNegative, type SparseOptimizerOptions } from './sparse-optimizer.js';
import { claimFresh, expectEntry, type NamedArray } from './named-array.js';
import type { ExpertTable } from './expert-table.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { ArenaArray } from './wasm/arena.js';

export interface SparseAdamOptions extends SparseOptimizerOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
}

export interface AdamState {
  /** First moments [N * d]. */
  m: Float32Array;
  /** Second moments [N * d]. */
  v: Float32Array;
  /** Times each row was updated [N]. */
  steps: Int32Array;
}

/** Moments in the table's arena (SIMD kernel) or in plain arrays (JS loop). */
interface AdamSlots {
  m: ArenaArray<Float32Array> | Float32Array;
  v: ArenaArray<Float32Array> | Float32Array;
  steps: Int32Array;
  /** Per-row (step size, 1 / sqrt(bias correction 2)) handed to the kernel, [2 * capacity]. */
  coef: ArenaArray<Float32Array> | undefined;
}

const live = (a: ArenaArray<Float32Array> | Float32Array): Float32Array => (a instanceof ArenaArray ? a.array : a);

/** Bias corrections are cached up to this step count; later ones are computed. */
const BIAS_CACHE_LIMIT = 1 << 20;

export class SparseAdam extends SparseOptimizer<AdamSlots> {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** 1 / (1 - beta1^t) and 1 / sqrt(1 - beta2^t) by t. */
  private inverseBc1 = new Float64Array(0);
  private inverseSqrtBc2 = new Float64Array(0);

  constructor(options: SparseAdamOptions, tables: readonly ExpertTable[] = []) {
    super(options, tables);
    const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = options;
    for (const [what, value] of [['beta1', beta1], ['beta2', beta2]] as const) {
      if (!(value >= 0 && value < 1)) throw new Error(`SparseAdam: ${what} must be in [0, 1), got ${value}`);
    }
    checkNonNegative('SparseAdam', 'eps', eps);
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.eps = eps;
  }

  /** The moments and step counts of `table` (live views), or undefined if it has none yet. */
  stateOf(table: ExpertTable): AdamState | undefined {
    const slots = this.lookup(table);
    return slots ? { m: live(slots.m), v: live(slots.v), steps: slots.steps } : undefined;
  }

  protected createState(table: ExpertTable): AdamSlots {
    const size = table.rows * table.dim;
    const arena = table.arena;
    const m = arena ? ArenaArray.alloc(arena, size, Float32Array) : undefined;
    const v = m && arena ? ArenaArray.alloc(arena, size, Float32Array) : undefined;
    return { m: m && v ? m : new Float32Array(size), v: m && v ? v : new Float32Array(size), steps: new Int32Array(table.rows), coef: undefined };
  }

  private biasCorrections(t: number): void {
    if (t < this.inverseBc1.length || t >= BIAS_CACHE_LIMIT) return;
    const length = Math.min(BIAS_CACHE_LIMIT, Math.max(1024, 2 ** Math.ceil(Math.log2(t + 1))));
    this.inverseBc1 = Float64Array.from({ length }, (_, k) => 1 / (1 - Math.pow(this.beta1, k)));
    this.inverseSqrtBc2 = Float64Array.from({ length }, (_, k) => 1 / Math.sqrt(1 - Math.pow(this.beta2, k)));
  }

  protected applyRows(table: ExpertTable, state: AdamSlots, grad: RowSparseGrad, lr: number, gradScale: number): void {
    const arena = table.arena;
    const layout = arena ? grad.arenaLayout(arena) : undefined;
    const d = table.dim;
    if (arena && layout && state.m instanceof ArenaArray && state.v instanceof ArenaArray && d % 4 === 0) {
      const u = grad.size;
      if (!state.coef || state.coef.length < 2 * u) state.coef = ArenaArray.alloc(arena, 2 * Math.max(u, 1024), Float32Array);
      if (state.coef) {
        const order = grad.slotsInRowOrder();
        const coef = state.coef.array;
        const rows = grad.uniqueRows();
        const steps = state.steps;
        for (let s = 0; s < u; s++) {
          const row = rows[order[s]!]!;
          const t = steps[row]! + 1;
          steps[row] = t;
          this.biasCorrections(t);
          if (t < this.inverseBc1.length) {
            coef[2 * s] = lr * this.inverseBc1[t]!;
            coef[2 * s + 1] = this.inverseSqrtBc2[t]!;
          } else {
            coef[2 * s] = lr / (1 - Math.pow(this.beta1, t));
            coef[2 * s + 1] = 1 / Math.sqrt(1 - Math.pow(this.beta2, t));
          }
        }
        arena.kernels.adam(
          u,
          layout.orderOffset,
          layout.rowsOffset,
          state.coef.offset,
          layout.valuesOffset,
          table.arenaOffset!,
          state.m.offset,
          state.v.offset,
          d * 4,
          this.beta1,
          1 - this.beta1,
          this.beta2,
          1 - this.beta2,
          this.eps,
          1 - lr * this.weightDecay,
          gradScale,
        );
        return;
      }
    }
    adamRows(table.data, live(state.m), live(state.v), state.steps, grad.uniqueRows(), grad.rowGrads(), d, lr, this.beta1, this.beta2, this.eps, this.weightDecay, gradScale);
  }

  protected entriesOf(table: ExpertTable, state: AdamSlots, prefix: string): NamedArray[] {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    return [
      { name: `${base}.m`, dtype: 'F32', shape, data: live(state.m) },
      { name: `${base}.v`, dtype: 'F32', shape, data: live(state.v) },
      { name: `${base}.steps`, dtype: 'I32', shape: [table.rows], data: state.steps },
    ];
  }

  protected loadInto(table: ExpertTable, state: AdamSlots, prefix: string, get: (name: string) => NamedArray | undefined): void {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    // Check all three before changing anything.
    const m = expectEntry(`${base}.m`, get(`${base}.m`), { shape, dtypes: ['F32'] });
    const v = expectEntry(`${base}.v`, get(`${base}.v`), { shape, dtypes: ['F32'] });
    const steps = expectEntry(`${base}.steps`, get(`${base}.steps`), { shape: [table.rows], dtypes: ['I32'] });
    state.m = take(m.data as Float32Array, state.m);
    state.v = take(v.data as Float32Array, state.v);
    state.steps = take(steps.data as Int32Array, state.steps) as Int32Array;
  }
}

/** Copies `loaded` into arena state; a plain state takes over an array read freshly for it, or copies. */
function take<T extends Float32Array | Int32Array>(loaded: T, own: ArenaArray<Float32Array> | T): ArenaArray<Float32Array> | T {
  if (own instanceof ArenaArray) {
    own.array.set(loaded);
    return own;
  }
  if (claimFresh(loaded)) return loaded;
  own.set(loaded as never);
  return own;
}

/**
 * The lazy Adam update of rows `rows` ([U]) with gradients `grads` ([U * d]) in place. Math in
 * float64, stored in float32.
 */
export function adamRows(
  w: Float32Array,
  m: Float32Array,
  v: Float32Array,
  steps: Int32Array,
  rows: Int32Array,
  grads: Float32Array,
  d: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
  gradScale: number,
): void {
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  const decay = 1 - lr * weightDecay;
  const u = rows.length;
  for (let s = 0; s < u; s++) {
    const row = rows[s]!;
    const t = steps[row]! + 1;
    steps[row] = t;
    const stepSize = lr / (1 - Math.pow(beta1, t));
    const invSqrtBc2 = 1 / Math.sqrt(1 - Math.pow(beta2, t));
    const o = row * d;
    const go = s * d;
    for (let j = 0; j < d; j++) {
      const g = grads[go + j]! * gradScale;
      const mj = beta1 * m[o + j]! + c1 * g;
      const vj = beta2 * v[o + j]! + c2 * g * g;
      m[o + j] = mj;
      v[o + j] = vj;
      w[o + j] = decay * w[o + j]! - (stepSize * mj) / (Math.sqrt(vj) * invSqrtBc2 + eps);
    }
  }
}
