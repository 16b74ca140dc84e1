import { describe, expect, it } from 'vitest';
import { FunctionBuilder, I32, rowLoop } from '../wasm-emitter/wasm-emitter.js';
import { Rng } from '../rng.js';
import { Arena } from './arena.js';
import { kernelsOnHeap } from './engine-heap.js';
import { KernelPool, MAX_POOL_CALLS, setKernelThreads, kernelPool, splitRange } from './kernel-pool.js';

/** axpy(x, y, nBytes): y[i] += x[i], 8 floats at a time. */
function buildAxpy(): FunctionBuilder {
  const [x, y, nBytes] = [0, 1, 2];
  const f = new FunctionBuilder([I32, I32, I32]);
  const j = f.local(I32);
  rowLoop(f, j, nBytes, (offset) => {
    f.get(y).get(j).add();
    f.get(y).get(j).add().v128Load(offset);
    f.get(x).get(j).add().v128Load(offset);
    f.f32x4Add().v128Store(offset);
  });
  return f;
}
const KEY = 'test/axpy';
const functions = () => [{ name: 'axpy', builder: buildAxpy() }];

describe('splitRange', () => {
  it('covers [0, count) with near-equal contiguous ranges, none empty', () => {
    expect(splitRange(10, 3)).toEqual([[0, 3], [3, 6], [6, 10]]);
    expect(splitRange(2, 4)).toEqual([[0, 1], [1, 2]]);
    expect(splitRange(0, 4)).toEqual([]);
    expect(splitRange(7, 1)).toEqual([[0, 7]]);
  });
});

describe('KernelPool', () => {
  it('a pass split over 3 threads writes what one call writes, on fresh random inputs', () => {
    const started = KernelPool.start(3);
    if (typeof started === 'string') throw new Error(started);
    const pool = started;
    try {
      const rng = new Rng(Number(process.env.PEER_TEST_SEED ?? Date.now() % 2 ** 31));
      const n = 8 * 1000; // floats, a multiple of 8 (the row loop's unroll)
      const arena = Arena.create(1 << 20, true)!;
      const xAt = arena.alloc(n * 4)!;
      const yAt = arena.alloc(n * 4)!;
      const refAt = arena.alloc(n * 4)!;
      const heap = () => new Float32Array(arena.memory.buffer);
      for (let i = 0; i < n; i++) {
        heap()[xAt / 4 + i] = rng.normal();
        heap()[yAt / 4 + i] = heap()[refAt / 4 + i] = rng.normal();
      }
      const plain = Float64Array.from({ length: n }, (_, i) => heap()[refAt / 4 + i]! + heap()[xAt / 4 + i]!);
      kernelsOnHeap<{ axpy(x: number, y: number, bytes: number): void }>(arena.memory, KEY, functions)!.axpy(xAt, refAt, n * 4);
      // Ranges of whole 8-float rows, one per thread.
      const calls = splitRange(n / 8, 3).map(([a, b]) => [xAt + a * 32, yAt + a * 32, (b - a) * 32]);
      pool.run(arena.memory, KEY, functions, 'axpy', calls);
      const y = heap().slice(yAt / 4, yAt / 4 + n);
      const ref = heap().slice(refAt / 4, refAt / 4 + n);
      expect(Array.from(y)).toEqual(Array.from(ref));
      for (let i = 0; i < n; i++) expect(y[i]).toBe(Math.fround(plain[i]!));
      // A second pass (the module is loaded once per memory) and a pass after the memory grew.
      arena.alloc(4 << 20);
      pool.run(arena.memory, KEY, functions, 'axpy', calls);
      const twice = heap().slice(yAt / 4, yAt / 4 + n);
      for (let i = 0; i < n; i++) expect(twice[i]).toBe(Math.fround(y[i]! + heap()[xAt / 4 + i]!));
    } finally {
      pool.end();
    }
  });

  it('many more calls than threads, claimed by whichever thread is free, write what one call writes', () => {
    const pool = KernelPool.start(2) as KernelPool;
    try {
      const rng = new Rng(Number(process.env.PEER_TEST_SEED ?? Date.now() % 2 ** 31));
      const rows = 64 + rng.int(200); // rows of 8 floats
      const n = 8 * rows;
      const arena = Arena.create(1 << 20, true)!;
      const [xAt, yAt, refAt] = [arena.alloc(n * 4)!, arena.alloc(n * 4)!, arena.alloc(n * 4)!];
      const heap = () => new Float32Array(arena.memory.buffer);
      const axpy = kernelsOnHeap<{ axpy(x: number, y: number, bytes: number): void }>(arena.memory, KEY, functions)!;
      for (const spin of [0, 0.5]) {
        pool.setSpin(spin);
        for (let pass = 0; pass < 20; pass++) {
          for (let i = 0; i < n; i++) {
            heap()[xAt / 4 + i] = rng.normal();
            heap()[yAt / 4 + i] = heap()[refAt / 4 + i] = rng.normal();
          }
          axpy.axpy(xAt, refAt, n * 4);
          const parts = 1 + rng.int(Math.min(rows, 40));
          pool.run(arena.memory, KEY, functions, 'axpy', splitRange(rows, parts).map(([a, b]) => [xAt + a * 32, yAt + a * 32, (b - a) * 32]));
          expect(Array.from(heap().slice(yAt / 4, yAt / 4 + n))).toEqual(Array.from(heap().slice(refAt / 4, refAt / 4 + n)));
        }
      }
    } finally {
      pool.end();
    }
  });

  it('an out-of-bounds access in any call is an error of the pass, and the pool works after it', () => {
    const pool = KernelPool.start(2) as KernelPool;
    try {
      const arena = Arena.create(1 << 16, true)!;
      // Either thread may run the bad call: on a worker its error comes back in a message.
      for (let bad = 0; bad < 4; bad++) {
        const calls = [0, 1, 2, 3].map((c) => [0, c === bad ? 2 ** 31 : 64 * (c + 1), 32]);
        expect(() => pool.run(arena.memory, KEY, functions, 'axpy', calls)).toThrow(/memory access out of bounds/);
      }
      const at = arena.alloc(256)!;
      new Float32Array(arena.memory.buffer, at, 64).fill(1);
      pool.run(arena.memory, KEY, functions, 'axpy', [[at, at + 128, 32], [at + 32, at + 160, 32]]);
      expect(Array.from(new Float32Array(arena.memory.buffer, at + 128, 16))).toEqual(new Array(16).fill(2));
    } finally {
      pool.end();
    }
  });

  it('refuses a memory that is not shared, too many calls, and calls of different lengths', () => {
    const pool = KernelPool.start(2) as KernelPool;
    try {
      expect(() => pool.run(Arena.create(1 << 16, false)!.memory, KEY, functions, 'axpy', [[0, 0, 0]])).toThrow('the memory is not shared');
      const shared = Arena.create(1 << 16, true)!.memory;
      const many = Array.from({ length: MAX_POOL_CALLS + 1 }, () => [0, 0, 0]);
      expect(() => pool.run(shared, KEY, functions, 'axpy', many)).toThrow(`${MAX_POOL_CALLS + 1} calls, at most ${MAX_POOL_CALLS}`);
      expect(() => pool.run(shared, KEY, functions, 'axpy', [[0, 0, 0], [0, 0]])).toThrow('call 1 of axpy has 2 arguments, call 0 has 3');
      expect(() => pool.run(shared, KEY, functions, 'nope', [[0, 0, 0]])).toThrow("has no function 'nope'");
      expect(() => pool.setSpin(-1)).toThrow('ms must be in [0, 1000], got -1');
    } finally {
      pool.end();
    }
  });

  it('setKernelThreads starts one pool per count, and new arenas are shared while it runs', () => {
    expect(setKernelThreads(2)).toBeUndefined();
    const a = kernelPool();
    expect(a?.threads).toBe(2);
    expect(setKernelThreads(2)).toBeUndefined();
    expect(kernelPool()).toBe(a);
    expect(Arena.create(1 << 16)!.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    setKernelThreads(1);
    expect(kernelPool()).toBeUndefined();
    expect(Arena.create(1 << 16)!.memory.buffer).toBeInstanceOf(ArrayBuffer);
  });
});
