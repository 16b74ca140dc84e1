// Row kernels of the gather-mixture (WebAssembly SIMD builders; host-table.ts runs them in the
// table's arena, and JS loops of the same semantics where they cannot run: widths that are not a
// multiple of 8, plain tables, hosts without wasm SIMD).
//
// Axes: T tokens, R rows per token (h*k), U distinct rows, D row width. `rows` is the table's row
// block; slot[t, r] (int32) is the table row read by occurrence (t, r), read in place.
//
//   dot:   out[t, r]    = rows[slot[t, r], :] . x[t, :]            (a = u . x;  s = v . dy)
//   wsum:  y[t, :]      = sum_r w[t, r] rows[slot[t, r], :]        (y = sum w v;  dx = sum da u)
//   group_sum_into: grad[slot(u), :] (+)= sum_{o in group u} c[o] x[o / R, :]
//                                          (dU_e = sum da x, dV_e = sum w dy per distinct row e)
//   group_dot:     dot over the occurrences grouped by row (each row read once)
//   group_dot_sum_into: both in one pass (s = v . dy with dV)
//
// Why: these are memory-bound products over [T, R, D] rows (64 MiB per table at T = 512, R = 128,
// D = 256); tfjs-wasm's broadcasting mul + sum and plain JS loops are several times slower (timings
// in the expert-store README).
import { FunctionBuilder, I32, Op, rowLoop, V128 } from '@peer/backend/wasm';

/**
 * Pushes the f32 sum of the lanes of acc0 + acc1 ((l0 + l1) + (l2 + l3)); clobbers acc0. The one
 * order of a dot's final sum, shared by `dot` and the grouped dots so that they give the same bits.
 */
function horizontalSum(f: FunctionBuilder, acc0: number, acc1: number): void {
  f.get(acc0).get(acc1).f32x4Add().set(acc0);
  f.get(acc0).f32x4ExtractLane(0).get(acc0).f32x4ExtractLane(1).f32Add();
  f.get(acc0).f32x4ExtractLane(2).get(acc0).f32x4ExtractLane(3).f32Add();
  f.f32Add();
}

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
      f.get(out);
      horizontalSum(f, acc0, acc1);
      f.f32Store();
      f.increment(out, 4);
    });
    f.increment(x, () => f.get(dBytes));
  });
  return f;
}

/** Rows of a token that wsum reads together from a table read in place (the remainder one at a time). */
export const WSUM_ROWS_IN_FLIGHT = 4;

/**
 * wsum adds a token's rows `inFlight` at a time: y = (((y + w0 r0) + w1 r1) + ...), the additions of
 * one row at a time in the same order (the same numbers), with the loads of several rows in flight.
 * Random rows of a table read in place want several (one at a time waits for each); the rows of a
 * gathered copy lie in order, one stream, and want one (expert-store README, "Grouped passes").
 */
export function buildWsum(inFlight: number): FunctionBuilder {
  const [rows, slot, w, y, tCount, rCount, d] = [0, 1, 2, 3, 4, 5, 6];
  const f = new FunctionBuilder(7);
  const t = f.local(I32);
  const r = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const whole = f.local(I32);
  const row = Array.from({ length: inFlight }, () => f.local(I32));
  const wv = Array.from({ length: inFlight }, () => f.local(V128));
  f.get(d).i32(2).shl().set(dBytes);
  // whole = R rounded down to a multiple of inFlight (a power of two)
  f.get(rCount).i32(-inFlight).op(Op.i32And).set(whole);
  // Reads `count` rows: row[k] = rows + slot[k] * D * 4, wv[k] = splat(w[k]); then y += w[k] row[k] in k order.
  const addRows = (count: number) => {
    for (let k = 0; k < count; k++) {
      f.get(rows).get(slot).i32Load(4 * k).get(dBytes).mul().add().set(row[k]!);
      f.get(w).f32Load(4 * k).f32x4Splat().set(wv[k]!);
    }
    f.increment(slot, 4 * count);
    f.increment(w, 4 * count);
    rowLoop(f, j, dBytes, (offset) => {
      f.get(y).get(j).add(); // store address
      f.get(y).get(j).add().v128Load(offset);
      for (let k = 0; k < count; k++) f.get(wv[k]!).get(row[k]!).get(j).add().v128Load(offset).f32x4Mul().f32x4Add();
      f.v128Store(offset);
    });
  };
  f.forLoop(t, tCount, 1, () => {
    rowLoop(f, j, dBytes, (offset) => {
      f.get(y).get(j).add().v128Zero().v128Store(offset);
    });
    f.forLoop(r, whole, inFlight, () => addRows(inFlight));
    if (inFlight > 1) f.whileBelow(r, rCount, 1, () => addRows(1));
    f.increment(y, () => f.get(dBytes));
  });
  return f;
}

/**
 * One pass over the occurrences grouped by row: order [L] lists them group after group (ascending
 * table row), groupEnd [U] ends each group, and `start` is the position in `order` of the first
 * group's first occurrence (0 for the whole list; a later group's when the groups are split over
 * threads). Each occurrence o reads the token row src[o / R, :]. What the pass computes:
 *
 *   sums (group_sum_into): each group g sums c[o] src[o / R, :] into the gradient slot groupSlot[g]
 *     of `values` ([slots, D]): a fresh slot (groupSlot[g] >= 0) is overwritten with the sum, a slot
 *     that already holds a gradient (groupSlot[g] = ~slot < 0) gets the sum (computed in the one-row
 *     `scratch`) added.
 *   dots (group_dot): out[o] = rows[slots[o], :] . src[o / R, :], the numbers `dot` gives, with each
 *     group's table row read once (`dot` reads a row once per occurrence, in token order).
 *
 * Both in one pass (group_dot_sum_into) read each token row once for the two.
 */
export function buildGroupPass(pass: { dots: boolean; sums: boolean }): FunctionBuilder {
  const [order, groupEnd, groupSlot, coef, src, values, scratch, uCount, perToken, d, start, slots, rows, out] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const f = new FunctionBuilder(14);
  const u = f.local(I32);
  const i = f.local(I32);
  const end = f.local(I32);
  const o = f.local(I32);
  const j = f.local(I32);
  const dBytes = f.local(I32);
  const row = f.local(I32);
  const slot = f.local(I32);
  const sum = f.local(I32);
  const target = f.local(I32);
  const tableRow = f.local(I32);
  const cv = f.local(V128);
  const xv = f.local(V128);
  const acc0 = f.local(V128);
  const acc1 = f.local(V128);
  f.get(d).i32(2).shl().set(dBytes);
  f.get(start).set(i);
  f.forLoop(u, uCount, 1, () => {
    if (pass.sums) {
      f.get(groupSlot).i32Load().set(slot);
      f.increment(groupSlot, 4);
      // slot < 0 (signed): an earlier gradient; sum into scratch, add at the end.
      f.get(slot).i32(0).op(Op.i32LtS).op(Op.if, Op.void);
      f.get(slot).i32(-1).op(Op.i32Xor).set(slot); // slot = ~slot
      f.get(scratch).set(sum);
      f.op(Op.else);
      f.get(values).get(slot).get(dBytes).mul().add().set(sum);
      f.op(Op.end);
      f.get(values).get(slot).get(dBytes).mul().add().set(target);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(sum).get(j).add().v128Zero().v128Store(offset);
      });
    }
    if (pass.dots) {
      // tableRow = rows + slots[order[i]] * D * 4 (the group's row, from its first occurrence)
      f.get(rows).get(slots).get(order).get(i).i32(2).shl().add().i32Load().i32(2).shl().add().i32Load().get(dBytes).mul().add().set(tableRow);
    }
    f.get(groupEnd).i32Load().set(end);
    f.increment(groupEnd, 4);
    f.whileBelow(i, end, 1, () => {
      // o = order[i]; cv = splat(c[o]); row = src + (o / R) * D * 4
      f.get(order).get(i).i32(2).shl().add().i32Load().set(o);
      if (pass.sums) f.get(coef).get(o).i32(2).shl().add().f32Load().f32x4Splat().set(cv);
      f.get(src).get(o).get(perToken).divU().get(dBytes).mul().add().set(row);
      if (pass.dots) f.v128Zero().set(acc0).v128Zero().set(acc1);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(row).get(j).add().v128Load(offset).set(xv);
        if (pass.dots) {
          const acc = offset === 0 ? acc0 : acc1;
          f.get(acc).get(tableRow).get(j).add().v128Load(offset).get(xv).f32x4Mul().f32x4Add().set(acc);
        }
        if (pass.sums) {
          f.get(sum).get(j).add();
          f.get(sum).get(j).add().v128Load(offset);
          f.get(cv).get(xv).f32x4Mul().f32x4Add().v128Store(offset);
        }
      });
      if (pass.dots) {
        f.get(out).get(o).i32(2).shl().add();
        horizontalSum(f, acc0, acc1);
        f.f32Store();
      }
    });
    if (pass.sums) {
      // sum != target: target += sum
      f.get(sum).get(target).op(Op.i32Ne).op(Op.if, Op.void);
      rowLoop(f, j, dBytes, (offset) => {
        f.get(target).get(j).add();
        f.get(target).get(j).add().v128Load(offset);
        f.get(sum).get(j).add().v128Load(offset);
        f.f32x4Add().v128Store(offset);
      });
      f.op(Op.end);
    }
  });
  return f;
}
