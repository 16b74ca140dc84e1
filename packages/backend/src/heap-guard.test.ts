import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_BUDGET_BYTES, HeapBudgetError, heapStats, setHeapBudget } from './heap-guard.js';
import { initBackend } from './init-backend.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});
afterAll(() => setHeapBudget(DEFAULT_HEAP_BUDGET_BYTES));

describe('heap guard', () => {
  it('counts live tensor bytes up on every allocation and back down on dispose', () => {
    const before = heapStats()!;
    expect(before.budgetBytes).toBe(DEFAULT_HEAP_BUDGET_BYTES);
    // Several allocations: emscripten's allocator exports rebind themselves on first use, and the
    // guard must survive that.
    const ts = [tf.zeros([1000, 250]), tf.zeros([1000]), tf.ones([7, 3], 'int32')];
    expect(heapStats()!.liveBytes - before.liveBytes).toBe((1000 * 250 + 1000 + 21) * 4);
    const product = tf.tidy(() => tf.matMul(tf.ones([64, 32]), tf.ones([32, 16])));
    expect(heapStats()!.liveBytes - before.liveBytes).toBe((1000 * 250 + 1000 + 21 + 64 * 16) * 4);
    tf.dispose([...ts, product]);
    expect(heapStats()!.liveBytes).toBe(before.liveBytes);
    expect(heapStats()!.heapBytes).toBeGreaterThanOrEqual(before.heapBytes);
  });

  it('throws HeapBudgetError past the budget, and the engine keeps working afterwards', () => {
    const { liveBytes } = heapStats()!;
    const numTensors = tf.memory().numTensors;
    setHeapBudget(liveBytes + 1024 ** 2);
    const small = tf.zeros([1000]); // 4 kB fits
    let caught: unknown;
    try {
      tf.zeros([1024, 1024]); // 4 MiB does not
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HeapBudgetError);
    const e = caught as HeapBudgetError;
    expect(e.requestedBytes).toBe(4 * 1024 ** 2);
    expect(e.budgetBytes).toBe(liveBytes + 1024 ** 2);
    expect(e.message).toMatch(/^wasm heap budget exceeded: allocating 4\.0 MiB with .* live would pass the budget of .*setHeapBudget raises it/);
    // The same inside an op on existing tensors.
    expect(() => tf.tidy(() => tf.matMul(tf.ones([600, 600]), tf.ones([600, 600])))).toThrow(HeapBudgetError);
    // Nothing half-made was left behind, and after raising the budget work goes on.
    expect(tf.memory().numTensors).toBe(numTensors + 1);
    setHeapBudget(DEFAULT_HEAP_BUDGET_BYTES);
    const range = tf.tidy(() => {
      const p = tf.matMul(tf.ones([600, 600]), tf.ones([600, 600]));
      return [tf.min(p).dataSync()[0], tf.max(p).dataSync()[0]];
    });
    expect(range).toEqual([600, 600]);
    small.dispose();
    expect(tf.memory().numTensors).toBe(numTensors);
    expect(heapStats()!.liveBytes).toBe(liveBytes);
  });

  it('rejects a budget that is not a positive number of bytes', () => {
    expect(() => setHeapBudget(0)).toThrow('heap budget must be a positive number of bytes, got 0');
    expect(() => setHeapBudget(Number.NaN)).toThrow(/got NaN/);
  });

  it('reports nothing on other engines', async () => {
    await tf.setBackend('cpu');
    expect(heapStats()).toBeUndefined();
    await tf.setBackend('wasm');
    expect(heapStats()).toBeDefined();
  });
});
