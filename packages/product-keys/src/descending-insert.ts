// The insertion step the selection kernels share (heap-top-k.ts, combine-halves-kernel.ts), emitted
// inline: one (value, index) into a row's descending list of at most k entries, exactly as
// row-top-k.ts's `insert` (entries equal to the value stay ahead of it).
import { type FunctionBuilder, Op } from '@peer/backend/wasm';

/** A row's list in memory, and the i32 locals the insertion uses. */
export interface DescendingList {
  /** Entries kept so far (i32 local). */
  count: number;
  /** The list's capacity (i32 local or parameter). */
  k: number;
  /** Scratch i32 locals. */
  pos: number;
  ok: number;
  at: number;
  /** Push the byte address of the value, or of the index, of entry `slot` (an i32 local). */
  valueAt(slot: number): void;
  indexAt(slot: number): void;
}

/**
 * Offers (x, index) to `list`: x is an f32 local, `pushIndex` pushes the i32 index to store. While
 * fewer than k are kept it takes a free place; else it replaces the last entry if x beats it.
 */
export function offerDescending(f: FunctionBuilder, list: DescendingList, x: number, pushIndex: () => void): void {
  const { count, k, pos, ok, at, valueAt, indexAt } = list;
  f.get(count).get(k).op(Op.i32LtS).op(Op.if, Op.void);
  f.get(count).set(pos).increment(count, 1).i32(1).set(ok);
  f.op(Op.else);
  f.get(k).i32(1).op(Op.i32Sub).set(pos);
  f.get(x);
  valueAt(pos);
  f.f32Load().op(Op.f32Gt).set(ok);
  f.op(Op.end);
  f.get(ok).op(Op.if, Op.void);
  // Shift smaller entries down; an equal one stays ahead (it was offered earlier).
  f.op(Op.block, Op.void).op(Op.loop, Op.void);
  f.get(pos).op(Op.i32Eqz).op(Op.brIf, 1);
  valueAt(pos);
  f.set(at);
  f.get(at).i32(4).op(Op.i32Sub).f32Load().get(x).op(Op.f32Lt).op(Op.i32Eqz).op(Op.brIf, 1);
  f.get(at).get(at).i32(4).op(Op.i32Sub).f32Load().f32Store();
  indexAt(pos);
  f.set(at);
  f.get(at).get(at).i32(4).op(Op.i32Sub).i32Load().i32Store();
  f.get(pos).i32(1).op(Op.i32Sub).set(pos);
  f.op(Op.br, 0);
  f.op(Op.end, Op.end);
  valueAt(pos);
  f.get(x).f32Store();
  indexAt(pos);
  pushIndex();
  f.i32Store();
  f.op(Op.end);
}
