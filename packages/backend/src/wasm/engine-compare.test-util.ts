// Test-only helpers (not exported from the package): run the same computation on the cpu and the
// wasm engine within one process, and plain float64 references.
// Axes: M rows, K contracted axis, P columns.
import * as tf from '@tensorflow/tfjs-core';

export type Engine = 'cpu' | 'wasm';

/** Runs `fn` on `engine` inside a tidy and returns plain arrays, so nothing crosses engines. */
export async function onEngine<T extends Float32Array | Int32Array | (Float32Array | Int32Array)[]>(
  engine: Engine,
  fn: () => tf.Tensor | tf.Tensor[],
): Promise<T> {
  if (!(await tf.setBackend(engine))) throw new Error(`cannot switch to ${engine}`);
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => {
    const r = fn();
    return (Array.isArray(r) ? r.map((t) => t.dataSync()) : r.dataSync()) as T;
  });
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`${engine}: ${after - before} tensors leaked`);
  return out;
}

/** Largest |x| of the data; error scales for relative comparisons. */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

/** Max element-wise error relative to max |scaleFrom| (default `expected`; a product can pass |a| @ |b|). */
export function scaledError(actual: ArrayLike<number>, expected: ArrayLike<number>, scaleFrom: ArrayLike<number> = expected): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  const scale = Math.max(maxAbs(scaleFrom), 1e-30);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / scale);
  return worst;
}

/**
 * Float64 batched matMul of row-major data with NumPy broadcasting of the batch axes.
 * `aShape`/`bShape` are the stored shapes; the transposes are applied as tf.matMul does.
 */
export function refMatMul(
  a: ArrayLike<number>,
  aShape: number[],
  b: ArrayLike<number>,
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
): { data: Float64Array; shape: number[] } {
  const ar = aShape.length;
  const br = bShape.length;
  const [aR, aC] = [aShape[ar - 2]!, aShape[ar - 1]!];
  const [bR, bC] = [bShape[br - 2]!, bShape[br - 1]!];
  const m = transposeA ? aC : aR;
  const k = transposeA ? aR : aC;
  const n = transposeB ? bR : bC;
  if ((transposeB ? bC : bR) !== k) throw new Error('inner dimensions differ');
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const rank = Math.max(aBatch.length, bBatch.length);
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s] as number[];
  const pa = pad(aBatch);
  const pb = pad(bBatch);
  const batch = pa.map((d, i) => Math.max(d, pb[i]!));
  const total = batch.reduce((p, d) => p * d, 1);
  const out = new Float64Array(total * m * n);
  for (let t = 0; t < total; t++) {
    // Unravel t over `batch`, then ravel over each operand's (broadcast) batch shape.
    let rem = t;
    let ai = 0;
    let bi = 0;
    let aStride = 1;
    let bStride = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const idx = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
      ai += (pa[d] === 1 ? 0 : idx) * aStride;
      bi += (pb[d] === 1 ? 0 : idx) * bStride;
      aStride *= pa[d]!;
      bStride *= pb[d]!;
    }
    const aOff = ai * aR * aC;
    const bOff = bi * bR * bC;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = transposeA ? a[aOff + p * aC + i]! : a[aOff + i * aC + p]!;
          const bv = transposeB ? b[bOff + j * bC + p]! : b[bOff + p * bC + j]!;
          s += av * bv;
        }
        out[t * m * n + i * n + j] = s;
      }
    }
  }
  return { data: out, shape: [...batch, m, n] };
}
