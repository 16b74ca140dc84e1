import * as tf from '@tensorflow/tfjs-core';

// Pieces along axis 0 are taken with gather, not tf.slice/tf.unstack: the wasm Slice kernel first
// copies its whole input (readSync), so cutting a large tensor into n pieces costs n full copies.
// A gather copies only the rows it takes (one memmove per run of rows with @peer/backend's fix).

/** x[start : start + count] along axis 0. */
export function leadingRows<T extends tf.Tensor>(x: T, start: number, count: number): T {
  if (start === 0 && count === x.shape[0]) return tf.clone(x);
  return tf.tidy(() => tf.gather(x, tf.range(start, start + count, 1, 'int32'))) as T;
}

/** x[index], dropping axis 0. */
export function leadingRow(x: tf.Tensor, index: number): tf.Tensor {
  return tf.tidy(() => tf.reshape(tf.gather(x, tf.tensor1d([index], 'int32')), x.shape.slice(1)));
}
