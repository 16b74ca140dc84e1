// Causal multi-head self-attention, from the fused projection qkv [T, 3D] to the concatenated head
// outputs [T, D], as one differentiable op with a hand-written backward pass.
//
// Axes: B batch, S sequence, T = B*S tokens, A heads, Dh head width (D = A*Dh), G = A*B
// (head, sequence) pairs, ordered g = h*B + b.
//
// Why by hand: every product here is a plain (untransposed) matMul, forward and backward, with the
// transposes done once on [G, S, Dh]-sized tensors (the S x S ones are never transposed):
//   forward   P = softmax(q k^T / sqrt(Dh) + mask),  O = P v
//   backward  dP = dO v^T,  dS = P * (dP - rowsum(dP * P)),  dq = dS k,  dk^T = q^T dS,  dv^T = dO^T P
// Mode 'batched' runs each product as one batched matMul over G. Mode 'sliced' runs G 2D matMuls
// on slices cut by copying once from the data: the built-in wasm batched matMul (batch > 1) takes a
// slow generic loop, an order of magnitude below 2D products. With @peer/backend's per-batch matMul
// fix installed, 'batched' is faster again (no copies; timings in the README).
import * as tf from '@tensorflow/tfjs-core';
import { ropeBackward, ropeForward, type RopeFactors } from './rope.js';

export type AttentionMode = 'sliced' | 'batched';

export interface AttentionContext {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  /** Additive causal mask [S, S]: 0 on and below the diagonal, a large negative number above. */
  mask: tf.Tensor2D;
  /** Rotary factors [S, Dh] for queries (already multiplied by 1/sqrt(Dh)) and keys; absent: no rotation. */
  rope?: { q: RopeFactors; k: RopeFactors };
  mode: AttentionMode;
}

/** A large negative score: exp of it underflows to exactly 0 in float32 after the softmax's max shift. */
export const MASKED_SCORE = -1e9;

/** The additive causal mask [S, S]. */
export function causalMask(seq: number): tf.Tensor2D {
  const m = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) for (let j = i + 1; j < seq; j++) m[i * seq + j] = MASKED_SCORE;
  return tf.tensor2d(m, [seq, seq]);
}

/** Splits x along axis 0 into x.shape[0] tensors by reading the data once (one copy in, one out). */
function unstackByData(x: tf.Tensor): tf.Tensor[] {
  const n = x.shape[0]!;
  const inner = x.shape.slice(1);
  const size = x.size / n;
  const data = x.dataSync() as Float32Array;
  return Array.from({ length: n }, (_, i) => tf.tensor(data.subarray(i * size, (i + 1) * size), inner, 'float32'));
}

/** [G, rows, columns] as the list of operands the mode multiplies: G matrices (sliced) or itself (batched). */
function parts(x: tf.Tensor3D, mode: AttentionMode): tf.Tensor[] {
  return mode === 'sliced' ? unstackByData(x) : [x];
}

/** Inverse of `parts`: [G, rows, columns]. */
function join(xs: tf.Tensor[], shape: [number, number, number]): tf.Tensor3D {
  return xs.length === 1 ? (xs[0] as tf.Tensor3D) : tf.reshape(tf.concat(xs, 0), shape);
}

function swapLastTwo(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]);
}

/** [T, n*D] laid out [B, S, n*A, Dh] -> [n*G, S, Dh] (g = h*B + b within each of the n groups). */
function toHeads(x: tf.Tensor2D, c: AttentionContext, n: number): tf.Tensor3D {
  const { batch: B, seq: S, heads: A, headDim: Dh } = c;
  return tf.reshape(tf.transpose(tf.reshape(x, [B, S, n * A, Dh]), [2, 0, 1, 3]), [n * A * B, S, Dh]);
}

/** Inverse of `toHeads`. */
function fromHeads(x: tf.Tensor3D, c: AttentionContext, n: number): tf.Tensor2D {
  const { batch: B, seq: S, heads: A, headDim: Dh } = c;
  return tf.reshape(tf.transpose(tf.reshape(x, [n * A, B, S, Dh]), [1, 2, 0, 3]), [B * S, n * A * Dh]);
}

/**
 * O = softmax(q k^T / sqrt(Dh) + mask) v per head, from qkv [T, 3D] (columns: all heads' queries,
 * then keys, then values; head h owns columns h*Dh..h*Dh+Dh-1 of each third) to [T, D].
 */
export function causalSelfAttention(qkv: tf.Tensor2D, c: AttentionContext): tf.Tensor2D {
  const { batch: B, seq: S, heads: A, headDim: Dh, mask, rope, mode } = c;
  const G = A * B;
  const scale = 1 / Math.sqrt(Dh);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor2D;
    const save = args[1] as tf.GradSaveFunc;
    const heads = tf.reshape(toHeads(input, c, 3), [3, G, S, Dh]);
    const [q0, k0, v] = (mode === 'sliced' ? unstackByData(heads) : tf.unstack(heads)) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
    const q = rope ? ropeForward(q0, rope.q) : (tf.mul(q0, scale) as tf.Tensor3D);
    const k = rope ? ropeForward(k0, rope.k) : k0;
    const qs = parts(q, mode);
    const kTs = parts(swapLastTwo(k), mode);
    const vs = parts(v, mode);
    const ps = qs.map((qi, i) => tf.softmax(tf.add(tf.matMul(qi, kTs[i]!), mask)));
    const out = join(
      ps.map((p, i) => tf.matMul(p, vs[i]!)),
      [G, S, Dh],
    );
    // Everything the backward pass reads goes through save(): the caller's tidy may release the
    // rope factors (row slices for short sequences) before the gradient runs.
    const ropeSaved = rope ? [rope.q.cos, rope.q.sin, rope.k.cos, rope.k.sin, rope.q.rotation] : [];
    save([q, k, v, ...ropeSaved, ...ps]);
    return {
      value: fromHeads(out, c, 1),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qSaved, kSaved, vSaved] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
        const r = saved.slice(3, rope ? 8 : 3) as tf.Tensor2D[];
        const ropeQ: RopeFactors | undefined = rope && { cos: r[0]!, sin: r[1]!, rotation: r[4]! };
        const ropeK: RopeFactors | undefined = rope && { cos: r[2]!, sin: r[3]!, rotation: r[4]! };
        const pSaved = saved.slice(rope ? 8 : 3);
        const dO = toHeads(dy as tf.Tensor2D, c, 1);
        const dOs = parts(dO, mode);
        const dOTs = parts(swapLastTwo(dO), mode);
        const vTs = parts(swapLastTwo(vSaved), mode);
        const ksPlain = parts(kSaved, mode);
        const qTs = parts(swapLastTwo(qSaved), mode);
        const dQs: tf.Tensor[] = [];
        const dKTs: tf.Tensor[] = [];
        const dVTs: tf.Tensor[] = [];
        pSaved.forEach((p, i) => {
          const dP = tf.matMul(dOs[i]!, vTs[i]!);
          const dS = tf.mul(p, tf.sub(dP, tf.sum(tf.mul(dP, p), -1, true)));
          dQs.push(tf.matMul(dS, ksPlain[i]!));
          dKTs.push(tf.matMul(qTs[i]!, dS));
          dVTs.push(tf.matMul(dOTs[i]!, p));
        });
        const dQ = join(dQs, [G, S, Dh]);
        const dK = swapLastTwo(join(dKTs, [G, Dh, S]));
        const dV = swapLastTwo(join(dVTs, [G, Dh, S]));
        const dQ0 = ropeQ ? ropeBackward(dQ, ropeQ) : (tf.mul(dQ, scale) as tf.Tensor3D);
        const dK0 = ropeK ? ropeBackward(dK, ropeK) : dK;
        return [fromHeads(tf.concat([dQ0, dK0, dV], 0), c, 3)];
      },
    };
  });
  return f(qkv) as tf.Tensor2D;
}
