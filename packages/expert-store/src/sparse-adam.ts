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
// Axes: N table rows, D row width, U touched rows.
import { SparseOptimizer, checkNonNegative, type SparseOptimizerOptions } from './sparse-optimizer.js';
import { claimFresh, expectEntry, type NamedArray } from './named-array.js';
import type { ExpertTable } from './expert-table.js';
import type { HostExpertTable } from './host-expert-table.js';
import { HostBlock } from './host-block.js';
import type { RowSparseGrad } from './row-sparse-grad.js';
import { arenaOf } from './table-arena.js';
import { runOptimizerPass } from './wasm/optimizer-kernels.js';
import type { WasmMemory } from '@peer/backend/wasm';

export interface SparseAdamOptions extends SparseOptimizerOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
}

export interface AdamState {
  /** First moments [N * D]. */
  m: Float32Array;
  /** Second moments [N * D]. */
  v: Float32Array;
  /** Times each row was updated [N]. */
  steps: Int32Array;
}

/** Moments in the table's arena (SIMD kernel) or in plain arrays (JS loop). */
interface AdamSlots {
  m: HostBlock<Float32Array>;
  v: HostBlock<Float32Array>;
  steps: HostBlock<Int32Array>;
  /** Per-row (step size, 1 / sqrt(bias correction 2)) handed to the kernel, [2 * capacity]. */
  coef: HostBlock<Float32Array> | undefined;
}

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
    return slots ? { m: slots.m.array, v: slots.v.array, steps: slots.steps.array } : undefined;
  }

  protected createState(table: HostExpertTable): AdamSlots {
    const size = table.rows * table.dim;
    const arena = arenaOf(table);
    const m = arena ? HostBlock.allocInArena(arena, size, Float32Array) : undefined;
    const v = m && arena ? HostBlock.allocInArena(arena, size, Float32Array) : undefined;
    const inArena = m && v;
    return {
      m: inArena ? m : HostBlock.alloc(undefined, size, Float32Array),
      v: inArena ? v : HostBlock.alloc(undefined, size, Float32Array),
      steps: HostBlock.alloc(undefined, table.rows, Int32Array),
      coef: undefined,
    };
  }

  private biasCorrections(t: number): void {
    if (t < this.inverseBc1.length || t >= BIAS_CACHE_LIMIT) return;
    const length = Math.min(BIAS_CACHE_LIMIT, Math.max(1024, 2 ** Math.ceil(Math.log2(t + 1))));
    this.inverseBc1 = Float64Array.from({ length }, (_, k) => 1 / (1 - Math.pow(this.beta1, k)));
    this.inverseSqrtBc2 = Float64Array.from({ length }, (_, k) => 1 / Math.sqrt(1 - Math.pow(this.beta2, k)));
  }

  protected applyRows(table: HostExpertTable, state: AdamSlots, grad: RowSparseGrad, lr: number, gradScale: number): void {
    const arena = arenaOf(table);
    const kernels = table.optimizerKernels();
    const layout = grad.arenaLayout(arena);
    const at = { w: table.rowsOffsetIn(arena), m: state.m.offsetIn(arena), v: state.v.offsetIn(arena) };
    const d = table.dim;
    if (arena && kernels && layout && at.w !== undefined && at.m !== undefined && at.v !== undefined && d % 4 === 0) {
      const u = grad.size;
      if (!state.coef || state.coef.length < 2 * u) state.coef = HostBlock.allocInArena(arena, 2 * Math.max(u, 1024), Float32Array);
      const coefAt = state.coef?.offsetIn(arena);
      if (state.coef && coefAt !== undefined) {
        const order = grad.slotsInRowOrder();
        const coef = state.coef.array;
        const rows = grad.uniqueRows();
        const steps = state.steps.array;
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
        adamKernel(arena.memory, {
          count: u,
          orderPtr: layout.orderOffset,
          rowsPtr: layout.rowsOffset,
          coefPtr: coefAt,
          gradPtr: layout.valuesOffset,
          wPtr: at.w,
          mPtr: at.m,
          vPtr: at.v,
          dBytes: d * 4,
          beta1: this.beta1,
          beta2: this.beta2,
          eps: this.eps,
          decay: 1 - lr * this.weightDecay,
          gradScale,
        });
        return;
      }
    }
    adamRows(table.data, state.m.array, state.v.array, state.steps.array, grad.uniqueRows(), grad.rowGrads(), d, lr, this.beta1, this.beta2, this.eps, this.weightDecay, gradScale);
  }

  protected entriesOf(table: HostExpertTable, state: AdamSlots, prefix: string): NamedArray[] {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    return [
      { name: `${base}.m`, dtype: 'F32', shape, data: state.m.array },
      { name: `${base}.v`, dtype: 'F32', shape, data: state.v.array },
      { name: `${base}.steps`, dtype: 'I32', shape: [table.rows], data: state.steps.array },
    ];
  }

  protected loadInto(table: HostExpertTable, state: AdamSlots, prefix: string, get: (name: string) => NamedArray | undefined): void {
    const base = `${prefix}${table.name}.adam`;
    const shape = [table.rows, table.dim];
    // Check all three before changing anything.
    const m = expectEntry(`${base}.m`, get(`${base}.m`), { shape, dtypes: ['F32'] });
    const v = expectEntry(`${base}.v`, get(`${base}.v`), { shape, dtypes: ['F32'] });
    const steps = expectEntry(`${base}.steps`, get(`${base}.steps`), { shape: [table.rows], dtypes: ['I32'] });
    state.m.take(m.data as Float32Array, claimFresh(m.data));
    state.v.take(v.data as Float32Array, claimFresh(v.data));
    state.steps.take(steps.data as Int32Array, claimFresh(steps.data));
  }
}

/** The lazy Adam kernel's arguments by name (pointers are byte offsets in the table's arena). */
interface AdamKernelArgs {
  count: number;
  orderPtr: number;
  rowsPtr: number;
  coefPtr: number;
  gradPtr: number;
  wPtr: number;
  mPtr: number;
  vPtr: number;
  dBytes: number;
  beta1: number;
  beta2: number;
  eps: number;
  decay: number;
  gradScale: number;
}

/** The lazy Adam kernel over the touched rows; rows split over the kernel pool's threads (see runOptimizerPass). */
function adamKernel(memory: WasmMemory, a: AdamKernelArgs): void {
  runOptimizerPass(memory, 'adam', a.count, (s0, s1) => [
    s1 - s0, a.orderPtr + s0 * 4, a.rowsPtr, a.coefPtr + s0 * 8, a.gradPtr, a.wPtr, a.mPtr, a.vPtr,
    a.dBytes, a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, a.eps, a.decay, a.gradScale,
  ]);
}

/**
 * The lazy Adam update of rows `rows` ([U]) with gradients `grads` ([U * D]) in place. Math in
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
