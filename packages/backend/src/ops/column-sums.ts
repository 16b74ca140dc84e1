// Column sums of a [T, D] matrix: the gradient of a bias added over rows, shared by every layer
// with a bias or a norm.
// Axes: T rows (tokens), D features.
import * as tf from '@tensorflow/tfjs-core';

/**
 * Sums of the columns of x [T, D] as [D] (the gradient of a broadcast add over rows). On the wasm
 * and cpu engines this reads the data once and adds in float64 on the host: wasm's tf.sum over
 * axis 0 transposes its input first, and a ones-vector matMul repacks all of x, both several times
 * slower. Elsewhere (GPU engines, where a read stalls the device) it is tf.sum.
 */
export function columnSums(x: tf.Tensor2D): tf.Tensor1D {
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') return tf.sum(x, 0);
  const [rows, cols] = x.shape;
  const values = x.dataSync();
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) acc[c]! += values[base + c]!;
  }
  return tf.tensor1d(Float32Array.from(acc));
}
