// Mean cross entropy of next-token logits against integer targets, with a stable log-softmax and a
// hand-written gradient ((softmax - onehot) / T), which avoids differentiating through a gather.
// Axes: T tokens (rows), V vocabulary.
import * as tf from '@tensorflow/tfjs-core';

/** mean_t( logsumexp(logits[t]) - logits[t, targets[t]] ); `targets` int32 [T] in [0, V). */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const [T, V] = logits.shape;
  if (targets.rank !== 1 || targets.shape[0] !== T || targets.dtype !== 'int32') {
    throw new Error(`crossEntropy: targets must be int32 [${T}], got ${targets.dtype} [${targets.shape.join(', ')}]`);
  }
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    const shifted = tf.sub(x, tf.max(x, -1, true));
    const exps = tf.exp(shifted);
    const sums = tf.sum(exps, -1, true);
    // int32 then cast: the wasm OneHot kernel writes int32 words even when asked for float32.
    const onehot = tf.cast(tf.oneHot(targets, V), 'float32');
    // Saving the probabilities (not the log-probabilities) spares the backward pass an exp over [T, V].
    save([tf.div(exps, sums), onehot]);
    return {
      value: tf.div(tf.sub(tf.sum(tf.log(sums)), tf.sum(tf.mul(shifted, onehot))), T),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [probs, oh] = saved as [tf.Tensor2D, tf.Tensor2D];
        return [tf.mul(tf.sub(probs, oh), tf.div(dy, T))];
      },
    };
  });
  return f(logits) as tf.Scalar;
}
