import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, testRng } from '@peer/test-utils';
import { HostExpertTable } from './host-expert-table.js';
import { float16ToFloat32, float32ToBFloat16, float32ToFloat16, bfloat16ToFloat32 } from './half-float.js';

function plainGather(data: Float32Array, d: number, indices: Int32Array): Float32Array {
  const out = new Float32Array(indices.length * d);
  for (let k = 0; k < indices.length; k++) for (let j = 0; j < d; j++) out[k * d + j] = data[indices[k]! * d + j]!;
  return out;
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('HostExpertTable', () => {
  it('initializes reproducibly from the seed, with the requested distribution', () => {
    const a = new HostExpertTable({ rows: 300, dim: 64, init: { kind: 'normal', std: 0.125 }, seed: 9 });
    const b = new HostExpertTable({ rows: 300, dim: 64, init: { kind: 'normal', std: 0.125 }, seed: 9 });
    const c = new HostExpertTable({ rows: 300, dim: 64, init: { kind: 'normal', std: 0.125 }, seed: 10 });
    expect(bytesOf(a.data).equals(bytesOf(b.data))).toBe(true);
    expect(bytesOf(a.data).equals(bytesOf(c.data))).toBe(false);
    let sumSq = 0;
    for (const x of a.data) sumSq += x * x;
    expect(Math.sqrt(sumSq / a.data.length)).toBeCloseTo(0.125, 2);
    const u = new HostExpertTable({ rows: 100, dim: 16, init: { kind: 'uniform', limit: 0.5 }, seed: 1 });
    expect(Math.max(...u.data)).toBeLessThan(0.5);
    expect(Math.min(...u.data)).toBeGreaterThanOrEqual(-0.5);
    expect(Math.max(...u.data)).toBeGreaterThan(0.45);
    const z = new HostExpertTable({ rows: 10, dim: 4, init: { kind: 'zeros' } });
    expect(z.data.every((x) => x === 0)).toBe(true);
    // Default: the spec's normal(0, 1/sqrt(d)).
    const def = new HostExpertTable({ rows: 400, dim: 100 });
    let s2 = 0;
    for (const x of def.data) s2 += x * x;
    expect(Math.sqrt(s2 / def.data.length)).toBeCloseTo(0.1, 2);
  });

  it('gathers rows equal to plain copies, with repeats, as a tensor and into an array', async () => {
    const rng = testRng();
    const d = 24;
    const table = new HostExpertTable({ rows: 500, dim: d, init: { kind: 'normal', std: 1 }, seed: rng.int(1000) });
    const indices = Int32Array.from({ length: 333 }, () => (rng.float() < 0.3 ? rng.int(5) : rng.int(500)));
    indices[0] = 0;
    indices[1] = 499;
    const want = plainGather(table.data, d, indices);
    const t = table.gather(indices);
    expect(t.shape).toEqual([333, d]);
    expect(t.dtype).toBe('float32');
    expect(Array.from(await t.data())).toEqual(Array.from(want));
    // The tensor is independent of the table.
    table.data[indices[5]! * d] = 1234;
    expect((await t.data())[5 * d]).toBe(want[5 * d]);
    t.dispose();
    expect(Array.from(table.gatherInto(Int32Array.of(7, 7), new Float32Array(2 * d)))).toEqual(Array.from(plainGather(table.data, d, Int32Array.of(7, 7))));
    const empty = table.gather(new Int32Array(0));
    expect(empty.shape).toEqual([0, d]);
    empty.dispose();
    // Gathers are tracked by tidy and leak nothing.
    await expectNoLeaks(() => tf.tidy(() => tf.sum(table.gather(indices)).dataSync()[0]));
    expect(() => table.gather(Int32Array.of(1, 500))).toThrow(/ExpertTable 'table'.gather: indices\[1\] = 500 is out of range \[0, 500\)/);
    expect(() => table.gatherInto(Int32Array.of(1), new Float32Array(3))).toThrow(/out has length 3, expected 1 x 24 = 24/);
    expect(() => table.gather([1, 2] as unknown as Int32Array)).toThrow(/indices must be an Int32Array/);
    expect(tf.memory().numTensors).toBe(0);
  });

  it('gathers in chunks through the arena kernel exactly as plain copies, also after a storage round trip', () => {
    const rng = testRng();
    const d = 256; // 512 rows per staging chunk: 1,300 lookups take three chunks
    for (const backing of ['arena', 'plain'] as const) {
      const table = new HostExpertTable({ rows: 3000, dim: d, init: { kind: 'normal', std: 1 }, seed: rng.int(1000), backing });
      expect(table.backingKind).toBe(backing);
      const indices = Int32Array.from({ length: 1300 }, () => rng.int(3000));
      const got = table.gatherInto(indices, new Float32Array(indices.length * d));
      expect(got, `${backing}, seed ${rng.seed}`).toEqual(plainGather(table.data, d, indices));
      // The staging block lives inside the table's reservation: a view taken before the first gather
      // is still attached (growing a wasm memory detaches every earlier view).
      const early = new HostExpertTable({ rows: 3000, dim: d, seed: 1, backing, reserveGradRows: 0, reserveStateSlots: 0 });
      const view = early.data;
      early.gatherInto(indices, new Float32Array(indices.length * d));
      expect(view.byteLength).toBe(3000 * d * 4);
      // Half storage drops the arena; back in float32 the rows live in a new arena.
      table.toStorage('bfloat16').toStorage('float32');
      expect(table.gatherInto(indices, new Float32Array(indices.length * d))).toEqual(plainGather(table.data, d, indices));
    }
  });

  it('stores rows as float16 or bfloat16 and gathers them widened to float32', async () => {
    const rng = testRng();
    const d = 16;
    const source = new HostExpertTable({ rows: 64, dim: d, init: { kind: 'normal', std: 2 }, seed: rng.int(1000) });
    const f32 = Float32Array.from(source.data);
    const indices = Int32Array.from({ length: 50 }, () => rng.int(64));
    for (const [storage, narrow, widen] of [
      ['float16', float32ToFloat16, float16ToFloat32],
      ['bfloat16', float32ToBFloat16, bfloat16ToFloat32],
    ] as const) {
      const table = new HostExpertTable({ rows: 64, dim: d, init: { kind: 'normal', std: 2 }, seed: 0, name: 'h' });
      table.data.set(f32);
      table.toStorage(storage);
      expect(table.storage).toBe(storage);
      expect(table.bytes).toBe(64 * d * 2);
      expect(() => table.data).toThrow(/data is float32 only, but the table is stored as/);
      const rounded = widen(narrow(f32));
      const t = table.gather(indices);
      expect(Array.from(await t.data())).toEqual(Array.from(plainGather(rounded, d, indices)));
      t.dispose();
      expect(Array.from(table.row(3))).toEqual(Array.from(rounded.subarray(3 * d, 4 * d)));
      expect(Array.from(table.halfData!)).toEqual(Array.from(narrow(f32)));
      // Back to float32: exact widening of the rounded values.
      table.toStorage('float32');
      expect(Array.from(table.data)).toEqual(Array.from(rounded));
      // A constructor option does the same.
      const direct = new HostExpertTable({ rows: 64, dim: d, init: { kind: 'normal', std: 2 }, seed: 5, storage });
      const ref = new HostExpertTable({ rows: 64, dim: d, init: { kind: 'normal', std: 2 }, seed: 5 });
      expect(Array.from(direct.halfData!)).toEqual(Array.from(narrow(ref.data)));
    }
  });

  it('saves and restores itself through state entries, converting dtypes', () => {
    const a = new HostExpertTable({ rows: 20, dim: 8, seed: 3, name: 'u' });
    const entries = a.stateEntries('layer0.');
    expect(entries.map((e) => [e.name, e.dtype, e.shape])).toEqual([['layer0.u', 'F32', [20, 8]]]);
    const b = new HostExpertTable({ rows: 20, dim: 8, init: { kind: 'zeros' }, name: 'u' });
    b.loadStateEntries('layer0.', (n) => entries.find((e) => e.name === n));
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    // Copied, not shared.
    b.data[0] = 42;
    expect(a.data[0]).not.toBe(42);
    const half = new HostExpertTable({ rows: 20, dim: 8, init: { kind: 'zeros' }, name: 'u', storage: 'bfloat16' });
    half.loadStateEntries('layer0.', (n) => entries.find((e) => e.name === n));
    expect(Array.from(half.halfData!)).toEqual(Array.from(float32ToBFloat16(a.data)));
    expect(HostExpertTable.fromEntry(entries[0]!).row(19)).toEqual(a.row(19));
    const wrong = new HostExpertTable({ rows: 21, dim: 8, name: 'u' });
    expect(() => wrong.loadStateEntries('layer0.', (n) => entries.find((e) => e.name === n))).toThrow(/state entry 'layer0.u' has shape \[20,8\], expected \[21,8\]/);
    expect(() => wrong.loadStateEntries('x.', () => undefined)).toThrow(/state entry 'x.u' is missing/);
  });

  it('refuses bad options and use after dispose with one clear error', () => {
    expect(() => new HostExpertTable({ rows: 0, dim: 4 })).toThrow(/rows must be a positive integer, got 0/);
    expect(() => new HostExpertTable({ rows: 4, dim: 2.5 })).toThrow(/dim must be a positive integer, got 2.5/);
    expect(() => new HostExpertTable({ rows: 4, dim: 4, init: { kind: 'normal', std: -1 } })).toThrow(/init.std must be a finite number >= 0, got -1/);
    expect(() => new HostExpertTable({ rows: 4, dim: 4, storage: 'float8' as never })).toThrow(/storage must be/);
    const t = new HostExpertTable({ rows: 4, dim: 4 });
    expect(() => t.row(4)).toThrow(/indices\[0\] = 4 is out of range/);
    t.dispose();
    expect(() => t.gather(Int32Array.of(0))).toThrow(/ExpertTable 'table' is disposed/);
  });
});
