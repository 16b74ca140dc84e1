// Axes: B batch, S sequence, T = B*S, A heads, Dh head width, D = A*Dh.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkGradients, expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { causalMask, causalSelfAttention, type AttentionContext, type AttentionMode } from './causal-attention.js';
import { rotateHalfMatrix, ropeTables, type RopeFactors } from './rope.js';

const BASE = 10_000;

/** Rotary position embedding of one head vector, written out pair by pair. */
function rope64(x: Float64Array, pos: number): Float64Array {
  const half = x.length / 2;
  const y = new Float64Array(x.length);
  for (let j = 0; j < half; j++) {
    const a = pos * BASE ** ((-2 * j) / x.length);
    y[j] = x[j]! * Math.cos(a) - x[j + half]! * Math.sin(a);
    y[j + half] = x[j + half]! * Math.cos(a) + x[j]! * Math.sin(a);
  }
  return y;
}

/** Plain causal attention per (sequence, head), from qkv rows [T, 3D] to [T, D]. */
function reference(qkv: Float64Array, B: number, S: number, A: number, Dh: number, useRope: boolean): Float64Array {
  const D = A * Dh;
  const out = new Float64Array(B * S * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < A; h++) {
      const vec = (s: number, which: number) => {
        const start = (b * S + s) * 3 * D + which * D + h * Dh;
        const v = qkv.slice(start, start + Dh);
        return useRope && which < 2 ? rope64(v, s) : v;
      };
      for (let i = 0; i < S; i++) {
        const q = vec(i, 0);
        const scores = Array.from({ length: i + 1 }, (_, j) => vec(j, 1).reduce((acc, kv, e) => acc + kv * q[e]!, 0) / Math.sqrt(Dh));
        const max = Math.max(...scores);
        const w = scores.map((x) => Math.exp(x - max));
        const z = w.reduce((a, c) => a + c, 0);
        for (let j = 0; j <= i; j++) {
          const v = vec(j, 2);
          for (let e = 0; e < Dh; e++) out[(b * S + i) * D + h * Dh + e]! += (w[j]! / z) * v[e]!;
        }
      }
    }
  }
  return out;
}

function context(B: number, S: number, A: number, Dh: number, mode: AttentionMode, useRope: boolean): AttentionContext {
  const factors = (scale: number): RopeFactors => {
    const t = ropeTables(S, Dh, BASE, scale);
    return { cos: tf.tensor2d(t.cos, [S, Dh]), sin: tf.tensor2d(t.sin, [S, Dh]), rotation: tf.tensor2d(rotateHalfMatrix(Dh), [Dh, Dh]) };
  };
  return {
    batch: B,
    seq: S,
    heads: A,
    headDim: Dh,
    mask: causalMask(S),
    ...(useRope ? { rope: { q: factors(1 / Math.sqrt(Dh)), k: factors(1) } } : {}),
    mode,
  };
}

function release(c: AttentionContext): void {
  tf.dispose([c.mask, ...(c.rope ? [c.rope.q.cos, c.rope.q.sin, c.rope.q.rotation, c.rope.k.cos, c.rope.k.sin, c.rope.k.rotation] : [])]);
}

const CASES = (['sliced', 'batched'] as const).flatMap((mode) => [true, false].map((rope) => ({ mode, rope })));

describe('causalSelfAttention', () => {
  it.each(CASES)('matches the float64 reference (mode $mode, rope $rope)', ({ mode, rope }) => {
    const rng = testRng();
    const [B, S, A, Dh] = [2, 6, 3, 4];
    const D = A * Dh;
    const qkv = rng.normals(B * S * 3 * D);
    const c = context(B, S, A, Dh, mode, rope);
    const x = tf.tensor2d(Float32Array.from(qkv), [B * S, 3 * D]);
    const y = tf.tidy(() => causalSelfAttention(x, c));
    expect(y.shape).toEqual([B * S, D]);
    expectClose(y.dataSync(), reference(qkv, B, S, A, Dh, rope), { rtol: 1e-4, atol: 1e-5, label: `seed ${rng.seed}` });
    tf.dispose([x, y]);
    release(c);
  });

  it.each(CASES)('has gradients that pass the finite-difference check (mode $mode, rope $rope)', ({ mode, rope }) => {
    const rng = testRng();
    const [B, S, A, Dh] = [2, 4, 2, 4];
    const D = A * Dh;
    const c = context(B, S, A, Dh, mode, rope);
    const x = tf.tensor2d(Float32Array.from(rng.normals(B * S * 3 * D)), [B * S, 3 * D]);
    const r = tf.tensor2d(Float32Array.from(rng.normals(B * S * D)), [B * S, D]);
    checkGradients((q) => tf.sum(tf.mul(causalSelfAttention(q as tf.Tensor2D, c), r)), [x], { maxCoords: 96, label: `seed ${rng.seed}` });
    tf.dispose([x, r]);
    release(c);
  });

  it('gives the same values and gradients in both modes', () => {
    const rng = testRng();
    const [B, S, A, Dh] = [3, 8, 2, 8];
    const D = A * Dh;
    const x = tf.tensor2d(Float32Array.from(rng.normals(B * S * 3 * D)), [B * S, 3 * D]);
    const r = tf.tensor2d(Float32Array.from(rng.normals(B * S * D)), [B * S, D]);
    const run = (mode: AttentionMode) => {
      const c = context(B, S, A, Dh, mode, true);
      const { value, grads } = tf.valueAndGrads((q: tf.Tensor) => tf.sum(tf.mul(causalSelfAttention(q as tf.Tensor2D, c), r)))([x]);
      const result = { value: value.dataSync()[0]!, grad: Array.from(grads[0]!.dataSync()) };
      tf.dispose([value, ...grads]);
      release(c);
      return result;
    };
    const sliced = run('sliced');
    const batched = run('batched');
    expectClose([sliced.value], [batched.value], { rtol: 1e-5 });
    expectClose(sliced.grad, batched.grad, { rtol: 1e-4, atol: 1e-6 });
    tf.dispose([x, r]);
  });

  it.each(['sliced', 'batched'] as const)('leaks no tensors in forward + backward (mode %s)', async (mode) => {
    const c = context(2, 5, 2, 4, mode, true);
    const x = tf.randomNormal([10, 24]) as tf.Tensor2D;
    await expectNoLeaks(() => {
      const g = tf.grad((q: tf.Tensor) => tf.sum(causalSelfAttention(q as tf.Tensor2D, c)))(x);
      g.dispose();
    });
    x.dispose();
    release(c);
  });

  it('masks exactly: position i never reads keys or values after i', () => {
    const mask = causalMask(4);
    expect(Array.from(mask.dataSync())).toEqual([0, -1e9, -1e9, -1e9, 0, 0, -1e9, -1e9, 0, 0, 0, -1e9, 0, 0, 0, 0].map(Math.fround));
    mask.dispose();
  });
});
