// Column sums of a [T, D] matrix: the gradient of a bias added over rows, shared by every layer
// with a bias or a norm.
// Axes: T rows (tokens), D features.
import * as tf from '@tensorflow/tfjs-core';
import { columnSumsOnHeap } from '../wasm/heap-column-sums.js';

let hostColumnSums = false;

/** Test hook: `true` sums on the host on wasm too (the route where the heap kernel cannot run). */
export function useHostColumnSums(host: boolean): void {
  hostColumnSums = host;
}

/**
 * Sums of the columns of x [T, D] as [D] (the gradient of a broadcast add over rows), each added
 * over the rows in order in float64 and rounded once. On wasm a SIMD kernel does this in place on
 * the heap, on every thread (wasm/heap-column-sums.ts); on cpu (or where that kernel cannot run) the
 * host reads the data once and adds the same way, with the same bits. Elsewhere (GPU engines, where
 * a read stalls the device) it is tf.sum.
 */
export function columnSums(x: tf.Tensor2D): tf.Tensor1D {
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') return tf.sum(x, 0);
  if (backend === 'wasm' && !hostColumnSums) {
    const onHeap = columnSumsOnHeap(x);
    if (onHeap) return onHeap;
  }
  const [rows, cols] = x.shape;
  const values = x.dataSync();
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) acc[c]! += values[base + c]!;
  }
  return tf.tensor1d(Float32Array.from(acc));
}
