import { afterEach, describe, expect, it } from 'vitest';
import { FunctionBuilder, I32 } from '../wasm-emitter/wasm-emitter.js';
import { Rng } from '../rng.js';
import { Arena } from './arena.js';
import { setKernelThreads } from './kernel-pool.js';
import { PASS_PARTS_PER_THREAD, passParts, runPass, setPassPartsPerThread } from './pooled-pass.js';

/** square(x, out, start, end): out[i] = x[i] * x[i] (int32, wrapping) for i in [start, end). */
function buildSquare(): FunctionBuilder {
  const [x, out, start, end] = [0, 1, 2, 3];
  const f = new FunctionBuilder([I32, I32, I32, I32]);
  f.whileBelow(start, end, 1, () => {
    f.get(out).get(start).i32(2).shl().add();
    f.get(x).get(start).i32(2).shl().add().i32Load();
    f.get(x).get(start).i32(2).shl().add().i32Load();
    f.mul().op(0x36, 0x02, 0x00); // i32.store
  });
  return f;
}
const SQUARE = { key: 'test/square', functions: () => [{ name: 'square', builder: buildSquare() }] };

afterEach(() => {
  setPassPartsPerThread(undefined);
  setKernelThreads(1);
});

describe('passParts', () => {
  it('cuts a large pass into up to PASS_PARTS_PER_THREAD parts per thread, each of at least the minimum', () => {
    setKernelThreads(2);
    const shared = Arena.create(1 << 16, true)!;
    const most = 2 * PASS_PARTS_PER_THREAD;
    expect(passParts(shared.memory, 1000, 10)).toBe(most);
    expect(passParts(shared.memory, 35, 10)).toBe(3);
    expect(passParts(shared.memory, 19, 10)).toBe(1);
    expect(passParts(shared.memory, 5, 0)).toBe(most);
    setPassPartsPerThread(1);
    expect(passParts(shared.memory, 1000, 10)).toBe(2);
    // No pool, or a memory the workers cannot share: one part.
    expect(passParts(Arena.create(1 << 16, false)!.memory, 1000, 10)).toBe(1);
    setKernelThreads(1);
    expect(passParts(shared.memory, 1000, 10)).toBe(1);
    expect(() => setPassPartsPerThread(0)).toThrow(/whole number >= 1, got 0/);
  });

  it('a pass cut into many parts writes what one call writes, on fresh random inputs', () => {
    setKernelThreads(3);
    const rng = new Rng(Number(process.env.PEER_TEST_SEED ?? Date.now() % 2 ** 31));
    const n = 5000 + rng.int(3000);
    const arena = Arena.create(1 << 20, true)!;
    const [xAt, outAt, refAt] = [arena.alloc(n * 4)!, arena.alloc(n * 4)!, arena.alloc(n * 4)!];
    const x = new Int32Array(arena.memory.buffer, xAt, n);
    for (let i = 0; i < n; i++) x[i] = rng.int(1 << 20) - (1 << 19);
    const calls: number[][] = [];
    const record = (start: number, end: number): number[] => {
      calls.push([start, end]);
      return [xAt, outAt, start, end];
    };
    runPass(arena.memory, SQUARE, 'square', n, 100, record);
    expect(calls).toHaveLength(3 * PASS_PARTS_PER_THREAD);
    setKernelThreads(1);
    runPass(arena.memory, SQUARE, 'square', n, 100, (start, end) => [xAt, refAt, start, end]);
    const [out, ref] = [new Int32Array(arena.memory.buffer, outAt, n), new Int32Array(arena.memory.buffer, refAt, n)];
    expect(Array.from(out)).toEqual(Array.from(ref));
    for (let i = 0; i < n; i += 97) expect(out[i]).toBe(Math.imul(x[i]!, x[i]!));
  });
});
