import { describe, expect, it } from 'vitest';
import { Arena, ArenaArray } from './arena.js';

describe('Arena', () => {
  it('staggers large blocks across 4 KiB boundaries and aligns every block to 64 bytes', () => {
    const arena = Arena.create(1 << 20)!;
    expect(arena).toBeDefined();
    const small = ArenaArray.alloc(arena, 3, Int32Array)!;
    const large = [0, 1, 2, 3].map(() => ArenaArray.alloc(arena, 1 << 18, Float32Array)!);
    const tail = ArenaArray.alloc(arena, 5, Float32Array)!;
    for (const block of [small, ...large, tail]) expect(block.offset % 64).toBe(0);
    // Four large blocks (a table's rows, two moments, gradient slots): distinct 1 KiB lanes of a
    // 4 KiB page, so the same row of each never shares an address modulo 4 KiB.
    const lanes = large.map((b) => b.offset % 4096);
    expect(lanes).toEqual([0, 1088, 2176, 3264]);
    // Blocks never overlap, and writes to one leave the others intact.
    const blocks = [small, ...large, tail];
    for (let i = 1; i < blocks.length; i++) {
      const prev = blocks[i - 1]!;
      expect(blocks[i]!.offset).toBeGreaterThanOrEqual(prev.offset + prev.length * 4);
    }
    large.forEach((b, i) => b.array.fill(i + 1));
    large.forEach((b, i) => expect(b.array.every((x) => x === i + 1)).toBe(true));
    expect(arena.used).toBe(tail.offset + 20);
  });
});
