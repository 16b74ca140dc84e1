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

export class SparseAdam extends SparseOptimizer<AdamState> {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;

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

  /** The moments and step counts of `table` (live), or undefined if it has none yet. */
  stateOf(table: ExpertTable): AdamState | undefined {
    return this.states.get(table);
  }

  protected createState(table: ExpertTable): AdamState {
    const size = table.rows * table.dim;
    return { m: new Float32Array(size), v: new Float32Array(size), steps: new Int32Array(table.rows) };
  }

  protected applyRows(table: ExpertTable, state: AdamState, grad: RowSparseGrad, lr: number, gradScale: number): void {
    adamRows(table.data, state.m, state.v, state.steps, grad.uniqueRows(), grad.rowGrads(), table.dim, lr, this.beta1, this.beta2, this.eps, this.weightDecay, gradScale);
  }

  protected entriesOf(table: ExpertTable, state: AdamState, prefix: string): NamedArray[] {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    return [
      { name: `${base}.m`, dtype: 'F32', shape, data: state.m },
      { name: `${base}.v`, dtype: 'F32', shape, data: state.v },
      { name: `${base}.steps`, dtype: 'I32', shape: [table.rows], data: state.steps },
    ];
  }

  protected loadInto(table: ExpertTable, state: AdamState, prefix: string, get: (name: string) => NamedArray | undefined): void {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    // Check all three before changing anything.
    const m = expectEntry(`${base}.m`, get(`${base}.m`), { shape, dtypes: ['F32'] });
    const v = expectEntry(`${base}.v`, get(`${base}.v`), { shape, dtypes: ['F32'] });
    const steps = expectEntry(`${base}.steps`, get(`${base}.steps`), { shape: [table.rows], dtypes: ['I32'] });
    state.m = take(m.data as Float32Array, state.m);
    state.v = take(v.data as Float32Array, state.v);
    state.steps = take(steps.data as Int32Array, state.steps);
  }
}

/** Keeps `loaded` if it was read freshly for us, else copies it into `own`. */
function take<T extends Float32Array | Int32Array>(loaded: T, own: T): T {
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
