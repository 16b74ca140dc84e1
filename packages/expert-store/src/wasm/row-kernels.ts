// Row kernels of the gather-mixture (WebAssembly SIMD builders; host-table.ts runs them in the
// table's arena, and JS loops of the same semantics where they cannot run: widths that are not a
// multiple of 8, plain tables, hosts without wasm SIMD).
//
// Axes: T tokens, R rows per token (h*k), U distinct rows, D row width. `rows` is the table's row
// block; slot[t, r] (int32) is the table row read by occurrence (t, r), read in place.
//
//   dot:   out[t, r]    = rows[slot[t, r], :] . x[t, :]            (a = u . x;  s = v . dy)
//   wsum:  y[t, :]      = sum_r w[t, r] rows[slot[t, r], :]        (y = sum w v;  dx = sum da u)
//   groupSumInto: grad[slot(u), :] (+)= sum_{o in group u} c[o] x[o / R, :]
//                                          (dU_e = sum da x, dV_e = sum w dy per distinct row e)
//
// Why: these are memory-bound products over [T, R, D] rows (64 MiB per table at T = 512, R = 128,
// D = 256); tfjs-wasm's broadcasting mul + sum and plain JS loops are several times slower (timings
// in the expert-store README).
import { FunctionBuilder, I32, rowLoop, V128 } from '@peer/backend/wasm';

export function buildDot(): FunctionBuilder {
  const [rows, slot, x, out, tCount, rCount, d] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const t = f.local(I32);
  const r = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const row = f.local(I32);
  const acc0 = f.local(V128);
  const acc1 = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.forLoop(t, tCount, 1, () => {
    f.forLoop(r, rCount, 1, () => {
      // row = rows + slot[t, r] * D * 4
      f.get(rows).get(slot).i32Load().get(dBytes).mul().add().set(row);
      f.increment(slot, 4);
      f.v128Zero().set(acc0).v128Zero().set(acc1);
      rowLoop(f, j, dBytes, (offset) => {
        const acc = offset === 0 ? acc0 : acc1;
        f.get(acc);
        f.get(row).get(j).add().v128Load(offset);
        f.get(x).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().set(acc);
      });
      // out[0] = horizontal sum of acc0 + acc1
      f.get(out);
      f.get(acc0).get(acc1).f32x4Add().set(acc0);
      f.get(acc0).f32x4ExtractLane(0).get(acc0).f32x4ExtractLane(1).f32Add();
      f.get(acc0).f32x4ExtractLane(2).get(acc0).f32x4ExtractLane(3).f32Add();
      f.f32Add().f32Store();
      f.increment(out, 4);
    });
    f.increment(x, () => f.get(dBytes));
  });
  return f;
}

export function buildWsum(): FunctionBuilder {
  const [rows, slot, w, y, tCount, rCount, d] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const t = f.local(I32);
  const r = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const row = f.local(I32);
  const wv = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, dBytes, (offset) => {
      f.get(y).get(j).add().v128Zero().v128Store(offset);
    });
    f.forLoop(r, rCount, 1, () => {
      f.get(rows).get(slot).i32Load().get(dBytes).mul().add().set(row);
      f.increment(slot, 4);
      f.get(w).f32Load().f32x4Splat().set(wv);
      f.increment(w, 4);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(y).get(j).add(); // store address
        f.get(y).get(j).add().v128Load(offset);
        f.get(wv);
        f.get(row).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().v128Store(offset);
      });
    });
    f.increment(y, () => f.get(dBytes));
  });
  return f;
}

/**
 * Like group_sum, but each group g sums into the gradient slot groupSlot[g] of `values` ([slots, D])
 * directly: a fresh slot (groupSlot[g] >= 0) is overwritten with the sum, a slot that already holds
 * a gradient (groupSlot[g] = ~slot < 0) gets the sum (computed in the one-row `scratch`) added.
 */
export function buildGroupSumInto(): FunctionBuilder {
  // start: the position in `order` of the first group's first occurrence (0 for the whole list; a
  // later group's when the groups are split over threads).
  const [order, groupEnd, groupSlot, coef, src, values, scratch, uCount, perToken, d, start] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const f = new FunctionBuilder(11);
  const u = f.local(I32);
  const i = f.local(I32);
  const end = f.local(I32);
  const o = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const row = f.local(I32);
  const slot = f.local(I32);
  const out = f.local(I32);
  const target = f.local(I32);
  const cv = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.get(start).set(i);
  f.forLoop(u, uCount, 1, () => {
    f.get(groupSlot).i32Load().set(slot);
    f.increment(groupSlot, 4);
    // slot < 0 (signed): an earlier gradient; sum into scratch, add at the end.
    f.get(slot).i32(0).op(0x48).op(0x04, 0x40); // if (slot < 0)
    f.get(slot).i32(-1).op(0x73).set(slot); // slot = ~slot
    f.get(scratch).set(out);
    f.op(0x05); // else
    f.get(values).get(slot).get(dBytes).mul().add().set(out);
    f.op(0x0b); // end if
    f.get(values).get(slot).get(dBytes).mul().add().set(target);
    rowLoop(f, j, dBytes, (offset) => {
      f.get(out).get(j).add().v128Zero().v128Store(offset);
    });
    f.get(groupEnd).i32Load().set(end);
    f.increment(groupEnd, 4);
    f.whileBelow(i, end, 1, () => {
      // o = order[i]; cv = splat(c[o]); row = src + (o / R) * D * 4
      f.get(order).get(i).i32(2).shl().add().i32Load().set(o);
      f.get(coef).get(o).i32(2).shl().add().f32Load().f32x4Splat().set(cv);
      f.get(src).get(o).get(perToken).divU().get(dBytes).mul().add().set(row);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(out).get(j).add();
        f.get(out).get(j).add().v128Load(offset);
        f.get(cv);
        f.get(row).get(j).add().v128Load(offset);
        f.f32x4Mul().f32x4Add().v128Store(offset);
      });
    });
    // out != target: target += out
    f.get(out).get(target).op(0x47).op(0x04, 0x40); // if (out != target)
    rowLoop(f, j, dBytes, (offset) => {
      f.get(target).get(j).add();
      f.get(target).get(j).add().v128Load(offset);
      f.get(out).get(j).add().v128Load(offset);
      f.f32x4Add().v128Store(offset);
    });
    f.op(0x0b); // end if
  });
  return f;
}
