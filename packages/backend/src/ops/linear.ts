// y = x W for rows x [T, I] and weights W [I, O], with a backward pass of untransposed matMuls:
//   dx = dy W^T (W^T is small: one explicit transpose),
//   dW = x^T dy, or (dy^T x)^T when I <= O.
// On wasm (XNNPACK) the product with the narrower output runs faster (timings in the README).
// Axes: T rows (tokens), I inputs, O outputs.
import * as tf from '@tensorflow/tfjs-core';

const linearOp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, w] = args as [tf.Tensor2D, tf.Tensor2D];
  const save = args[2] as tf.GradSaveFunc;
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
      const g = dy as tf.Tensor2D;
      const [inputs, outputs] = ws.shape;
      const dx = tf.matMul(g, tf.transpose(ws));
      const dw = inputs <= outputs ? tf.transpose(tf.matMul(tf.transpose(g), xs)) : tf.matMul(tf.transpose(xs), g);
      return [dx, dw];
    },
  };
});

/** x [T, I] times W [I, O] (see the file comment for the backward pass). */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return linearOp(x, w) as tf.Tensor2D;
}
