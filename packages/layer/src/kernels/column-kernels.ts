// Column kernels of the query BatchNorm over a [T, F] matrix (WebAssembly SIMD builders).
//
// T rows (tokens), F columns (query features), row-major; vectors are [F].
//
//   colSum:     out[j] = sum_t a[t, j]
//   colSumProd: out[j] = sum_t a[t, j] b[t, j]
//   affine:     out[t, j] = (a[t, j] - sub[j]) mul[j] + add[j]          (out may be a)
//   bnGrad:     out[t, j] = (dy[t, j] - p[j] - xhat[t, j] q[j]) c[j]
//
// Why: on wasm, tfjs reduces over axis 0 by transposing first, and the BatchNorm's dozen element-wise
// passes over [512, 2048] cost about 35 ms per step (JS loops about 20 ms); these run in a few.
import { FunctionBuilder, I32 } from '@peer/backend/wasm';
import { rowLoop } from './row-kernels.js';

/** out = sum over rows of a (or of a * b when `product`). */
export function buildColSum(product: boolean): FunctionBuilder {
  const params = product ? 5 : 4;
  // (a, [b,] out, T, F)
  const a = 0;
  const b = 1;
  const out = product ? 2 : 1;
  const tCount = out + 1;
  const fCount = out + 2;
  const f = new FunctionBuilder(params);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  rowLoop(f, j, fBytes, (offset) => {
    f.get(out).get(j).add().v128Zero().v128Store(offset);
  });
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(out).get(j).add().v128Load(offset);
      f.get(a).get(j).add().v128Load(offset);
      if (product) f.get(b).get(j).add().v128Load(offset).f32x4Mul();
      f.f32x4Add().v128Store(offset);
    });
    f.increment(a, () => f.get(fBytes));
    if (product) f.increment(b, () => f.get(fBytes));
  });
  return f;
}

/** (a, sub, mul, add, out, T, F): out[t, j] = (a[t, j] - sub[j]) * mul[j] + add[j]. */
export function buildAffine(): FunctionBuilder {
  const [a, sub, mul, add, out, tCount, fCount] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(a).get(j).add().v128Load(offset);
      f.get(sub).get(j).add().v128Load(offset);
      f.f32x4Sub();
      f.get(mul).get(j).add().v128Load(offset);
      f.f32x4Mul();
      f.get(add).get(j).add().v128Load(offset);
      f.f32x4Add().v128Store(offset);
    });
    f.increment(a, () => f.get(fBytes));
    f.increment(out, () => f.get(fBytes));
  });
  return f;
}

/** (dy, xhat, p, q, c, out, T, F): out[t, j] = (dy[t, j] - p[j] - xhat[t, j] * q[j]) * c[j]. */
export function buildBnGrad(): FunctionBuilder {
  const [dy, xhat, p, q, c, out, tCount, fCount] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f = new FunctionBuilder(8);
  const t = f.local(I32);
  const j = f.local(I32);
  const fBytes = f.local(I32);
  f.get(fCount).i32(2).shl().set(fBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, fBytes, (offset) => {
      f.get(out).get(j).add();
      f.get(dy).get(j).add().v128Load(offset);
      f.get(p).get(j).add().v128Load(offset);
      f.f32x4Sub();
      f.get(xhat).get(j).add().v128Load(offset);
      f.get(q).get(j).add().v128Load(offset);
      f.f32x4Mul().f32x4Sub();
      f.get(c).get(j).add().v128Load(offset);
      f.f32x4Mul().v128Store(offset);
    });
    f.increment(dy, () => f.get(fBytes));
    f.increment(xhat, () => f.get(fBytes));
    f.increment(out, () => f.get(fBytes));
  });
  return f;
}
