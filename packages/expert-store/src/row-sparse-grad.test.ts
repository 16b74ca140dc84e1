import { describe, expect, it } from 'vitest';
import { testRng } from '@peer/test-utils';
import { globalNorm, RowSparseGrad } from './row-sparse-grad.js';
import { HostExpertTable } from './host-expert-table.js';
import { arenaOf } from './table-arena.js';

describe('RowSparseGrad', () => {
  it('sums the gradients of repeated rows across calls, like a dense float64 scatter-add', () => {
    const rng = testRng();
    const rows = 97;
    const d = 5;
    const grad = new RowSparseGrad({ rows, dim: d }, { initialCapacity: 2 });
    const dense = new Float64Array(rows * d);
    const touched = new Set<number>();
    for (let call = 0; call < 4; call++) {
      const n = 30 + rng.int(40);
      // Draw from a small pool so rows repeat within and across calls.
      const indices = Int32Array.from({ length: n }, () => (rng.float() < 0.5 ? rng.int(8) : rng.int(rows)));
      const g = Float32Array.from(rng.normals(n * d));
      grad.accumulate(indices, g);
      indices.forEach((r, k) => {
        touched.add(r);
        for (let j = 0; j < d; j++) dense[r * d + j]! += g[k * d + j]!;
      });
    }
    expect(grad.size).toBe(touched.size);
    expect(new Set(grad.uniqueRows())).toEqual(touched);
    const unique = grad.uniqueRows();
    const values = grad.rowGrads();
    let sumSq = 0;
    for (let s = 0; s < grad.size; s++) {
      for (let j = 0; j < d; j++) {
        const want = dense[unique[s]! * d + j]!;
        expect(Math.abs(values[s * d + j]! - want), `seed ${rng.seed}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
        sumSq += want * want;
      }
    }
    for (let r = 0; r < rows; r++) expect(grad.gradOfRow(r) === undefined).toBe(!touched.has(r));
    expect(grad.norm()).toBeCloseTo(Math.sqrt(sumSq), 4);
    expect(globalNorm(grad, grad)).toBeCloseTo(Math.sqrt(2 * sumSq), 4);
    grad.scale(2);
    expect(grad.norm()).toBeCloseTo(2 * Math.sqrt(sumSq), 4);

    grad.clear();
    expect(grad.size).toBe(0);
    for (let r = 0; r < rows; r++) expect(grad.gradOfRow(r)).toBeUndefined();
    grad.accumulate(Int32Array.of(3, 3), Float32Array.from([1, 2, 3, 4, 5, 10, 20, 30, 40, 50]));
    expect(Array.from(grad.uniqueRows())).toEqual([3]);
    expect(Array.from(grad.slotGrad(0))).toEqual([11, 22, 33, 44, 55]);
  });

  it("keeps its slots in the table's arena, also after growing past the reserved space", () => {
    const rng = testRng();
    const d = 8;
    // Reserve no gradient rows: every growth allocates past the arena's initial size.
    const table = new HostExpertTable({ rows: 5000, dim: d, seed: 1, reserveGradRows: 0, reserveStateSlots: 0 });
    expect(table.backingKind).toBe('arena');
    const before = Float32Array.from(table.data);
    const grad = new RowSparseGrad(table, { initialCapacity: 2 });
    const dense = new Float64Array(5000 * d);
    for (let call = 0; call < 3; call++) {
      const indices = Int32Array.from({ length: 1500 }, () => rng.int(5000));
      const g = Float32Array.from(rng.normals(indices.length * d));
      grad.accumulate(indices, g);
      indices.forEach((r, k) => {
        for (let j = 0; j < d; j++) dense[r * d + j]! += g[k * d + j]!;
      });
    }
    expect(grad.arenaLayout(arenaOf(table))).toBeDefined();
    const rows = grad.uniqueRows();
    const values = grad.rowGrads();
    for (let s = 0; s < grad.size; s++) {
      for (let j = 0; j < d; j++) expect(values[s * d + j]).toBeCloseTo(dense[rows[s]! * d + j]!, 4);
    }
    // The table's rows are intact and readable through a fresh view after the memory grew.
    expect(Array.from(table.data)).toEqual(Array.from(before));
  });

  it('lists its slots in ascending row order, in plain memory and in an arena', () => {
    const rng = testRng();
    const table = new HostExpertTable({ rows: 3000, dim: 4, seed: 2, reserveGradRows: 16 });
    for (const grad of [new RowSparseGrad({ rows: 3000, dim: 4 }, { initialCapacity: 3 }), new RowSparseGrad(table, { initialCapacity: 3 })]) {
      for (let call = 0; call < 3; call++) {
        const indices = Int32Array.from({ length: 200 + rng.int(300) }, () => rng.int(3000));
        grad.accumulate(indices, new Float32Array(indices.length * 4));
        const order = Array.from(grad.slotsInRowOrder());
        const rows = grad.uniqueRows();
        // A permutation of the slots, walking the rows upwards.
        expect([...order].sort((a, b) => a - b), `seed ${rng.seed}`).toEqual(Array.from({ length: grad.size }, (_, s) => s));
        const visited = order.map((s) => rows[s]!);
        expect(visited, `seed ${rng.seed}`).toEqual([...rows].sort((a, b) => a - b));
      }
      grad.clear();
      expect(grad.slotsInRowOrder().length).toBe(0);
    }
  });

  it('groups occurrences by row like a plain stable sort, in an arena and in plain memory, table sizes over 1 to 3 radix passes', () => {
    const rng = testRng();
    for (const rows of [1, 2 + rng.int(2000), 4096 + rng.int(2 ** 20), 2 ** 22 + rng.int(2 ** 20)]) {
      const table = rows <= 4096 ? new HostExpertTable({ rows, dim: 2, seed: 3, reserveGradRows: 8 }) : { rows, dim: 2 };
      const grad = new RowSparseGrad(table, { initialCapacity: 4 });
      // Slot of each row in the reference, assigned as the grouping must: new rows of a call in ascending order.
      const slotOf = new Map<number, number>();
      for (let call = 0; call < 3; call++) {
        // Few distinct rows (many repeats) or many; some rows already hold slots from earlier calls.
        const distinct = 1 + rng.int(Math.min(rows, call === 1 ? 20 : 3000));
        const pool = Array.from({ length: distinct }, () => rng.int(rows));
        const indices = Int32Array.from({ length: rng.int(4000) }, () => pool[rng.int(distinct)]!);
        const groups = grad.groupOccurrences(indices);
        const byRow = [...new Set(indices)].sort((a, b) => a - b);
        for (const row of byRow) if (!slotOf.has(row)) slotOf.set(row, slotOf.size);
        const label = `rows ${rows}, call ${call} (seed ${rng.seed})`;
        expect(groups.groups, label).toBe(byRow.length);
        const order = Array.from(groups.order.array.subarray(0, indices.length));
        // A stable sort by row: each group's occurrences in increasing order.
        const expectedOrder = Array.from(indices.keys()).sort((a, b) => indices[a]! - indices[b]! || a - b);
        expect(order, label).toEqual(expectedOrder);
        let start = 0;
        byRow.forEach((row, g) => {
          const end = groups.groupEnd.array[g]!;
          expect(end - start, label).toBe(indices.filter((r) => r === row).length);
          expect(indices[order[start]!], label).toBe(row);
          const slot = groups.groupSlot.array[g]!;
          const fresh = slot >= 0;
          expect(fresh ? slot : ~slot, label).toBe(slotOf.get(row));
          start = end;
        });
        expect(grad.size, label).toBe(slotOf.size);
        expect(Array.from(grad.uniqueRows()), label).toEqual([...slotOf.keys()]);
      }
      // "fresh" slots come out as slot >= 0 only on their first call: a repeat call marks them ~slot.
      const again = grad.groupOccurrences(Int32Array.from([...slotOf.keys()].slice(0, 3)));
      for (let g = 0; g < again.groups; g++) expect(again.groupSlot.array[g]!).toBeLessThan(0);
    }
  });

  it("groups the same indices alike in two gradients (the second reuses the first's sort), and follows indices changed in place", () => {
    const rng = testRng();
    const rows = 4096 + rng.int(2 ** 16);
    const [a, b] = [new RowSparseGrad({ rows, dim: 2 }), new RowSparseGrad({ rows, dim: 2 })];
    const indices = Int32Array.from({ length: 2000 + rng.int(2000) }, () => rng.int(rows));
    const snapshot = (g: ReturnType<RowSparseGrad['groupOccurrences']>, n: number) => ({
      order: Array.from(g.order.array.subarray(0, n)),
      ends: Array.from(g.groupEnd.array.subarray(0, g.groups)),
      slots: Array.from(g.groupSlot.array.subarray(0, g.groups)),
    });
    const stableOrder = (x: Int32Array) => Array.from(x.keys()).sort((i, j) => x[i]! - x[j]! || i - j);
    const first = snapshot(a.groupOccurrences(indices), indices.length);
    expect(snapshot(b.groupOccurrences(indices), indices.length)).toEqual(first);
    expect(first.order, `seed ${rng.seed}`).toEqual(stableOrder(indices));
    // The same array, one entry changed: a new sort, not the remembered one.
    const at = rng.int(indices.length);
    indices[at] = (indices[at]! + 1 + rng.int(rows - 1)) % rows;
    a.clear();
    const changed = a.groupOccurrences(indices);
    expect(Array.from(changed.order.array.subarray(0, indices.length)), `seed ${rng.seed}`).toEqual(stableOrder(indices));
    expect(changed.groups).toBe(new Set(indices).size);
  });

  it('refuses bad input with one clear error', () => {
    const grad = new RowSparseGrad({ rows: 10, dim: 2 });
    expect(() => grad.accumulate(Int32Array.of(1, 10), new Float32Array(4))).toThrow(/indices\[1\] = 10 is out of range \[0, 10\)/);
    expect(() => grad.accumulate(Int32Array.of(1, -1), new Float32Array(4))).toThrow(/indices\[1\] = -1/);
    expect(() => grad.accumulate(Int32Array.of(1), new Float32Array(3))).toThrow(/rowGrads has length 3, expected 1 indices x 2 = 2/);
    expect(() => grad.accumulate([1] as unknown as Int32Array, new Float32Array(2))).toThrow(/indices must be an Int32Array, got Array/);
    expect(() => new RowSparseGrad({ rows: 0, dim: 2 })).toThrow(/rows must be a positive integer, got 0/);
    expect(grad.size).toBe(0);
  });
});
