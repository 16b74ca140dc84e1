// Rotary position embedding (RoFormer, "rotate half" layout as in GPT-NeoX / LLaMA): feature j of
// a head is paired with feature j + Dh/2 and the pair is rotated by the angle s * base^(-2j/Dh) at
// position s:  rope(x) = x * cos + rotateHalf(x) * sin,  rotateHalf([x1, x2]) = [-x2, x1].
// rotateHalf is the product with a fixed signed permutation R [Dh, Dh], whose transpose is -R, so
//   d rope / dx (dy) = dy * cos - rotateHalf(dy * sin).
// A [G*S, Dh] x [Dh, Dh] matMul is the fastest way to permute the halves on wasm (tf.reverse and
// slice + concat copy far more than they move).
// Axes: G (head, sequence) pairs, S positions, Dh head width.
import * as tf from '@tensorflow/tfjs-core';

/** Per-position factors for one forward pass: cos and sin [S, Dh], and R [Dh, Dh]. */
export interface RopeFactors {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  rotation: tf.Tensor2D;
}

/** cos and sin tables [seqLen, Dh] (each angle repeated for both halves), times `scale`. */
export function ropeTables(seqLen: number, headDim: number, base: number, scale = 1): { cos: Float32Array; sin: Float32Array } {
  if (headDim % 2 !== 0) throw new Error(`rope needs an even head width, got ${headDim}`);
  const half = headDim / 2;
  const cos = new Float32Array(seqLen * headDim);
  const sin = new Float32Array(seqLen * headDim);
  for (let s = 0; s < seqLen; s++) {
    for (let j = 0; j < half; j++) {
      const angle = s * base ** ((-2 * j) / headDim);
      cos[s * headDim + j] = cos[s * headDim + half + j] = Math.cos(angle) * scale;
      sin[s * headDim + j] = sin[s * headDim + half + j] = Math.sin(angle) * scale;
    }
  }
  return { cos, sin };
}

/** R [Dh, Dh] with x R = rotateHalf(x): R[j + Dh/2, j] = -1, R[j, j + Dh/2] = 1. */
export function rotateHalfMatrix(headDim: number): Float32Array {
  const half = headDim / 2;
  const r = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    r[(j + half) * headDim + j] = -1;
    r[j * headDim + j + half] = 1;
  }
  return r;
}

function rotateHalf(x: tf.Tensor3D, rotation: tf.Tensor2D): tf.Tensor3D {
  const [g, s, e] = x.shape;
  return tf.reshape(tf.matMul(tf.reshape(x, [g * s, e]), rotation), [g, s, e]);
}

/** rope(x) for x [G, S, Dh] (factors broadcast over G). Not differentiable by itself: the attention core's backward calls ropeBackward. */
export function ropeForward(x: tf.Tensor3D, f: RopeFactors): tf.Tensor3D {
  return tf.add(tf.mul(x, f.cos), tf.mul(rotateHalf(x, f.rotation), f.sin));
}

/** The gradient of ropeForward: dy * cos - rotateHalf(dy * sin). */
export function ropeBackward(dy: tf.Tensor3D, f: RopeFactors): tf.Tensor3D {
  return tf.sub(tf.mul(dy, f.cos), rotateHalf(tf.mul(dy, f.sin) as tf.Tensor3D, f.rotation));
}
