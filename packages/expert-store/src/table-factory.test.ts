// The factories on a host engine (wasm in tests): host tables and optimizers, whose prepareState is
// a no-op and whose entries are the ones the device optimizers write.
// Axes: N table rows, D row width.
import { expectClose } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { HostExpertTable } from './host-expert-table.js';
import { SparseAdam } from './sparse-adam.js';
import { SparseSgd } from './sparse-sgd.js';
import { createExpertTable, createSparseOptimizer } from './table-factory.js';

const [N, D] = [12, 4];

describe('createExpertTable / createSparseOptimizer off the device', () => {
  it('make host tables and optimizers by default, and say why a device table cannot start', async () => {
    const table = createExpertTable({ rows: N, dim: D, name: 'u', seed: 3 });
    expect(table).toBeInstanceOf(HostExpertTable);
    expect(table.placement).toBe('host');
    const direct = new HostExpertTable({ rows: N, dim: D, name: 'u', seed: 3 });
    await table.prepareState();
    expect(Array.from(table.stateEntries()[0]!.data as Float32Array)).toEqual(Array.from(direct.data));
    const adam = createSparseOptimizer({ kind: 'adam', lr: 0.1, beta1: 0.5 }, [table]);
    expect(adam).toBeInstanceOf(SparseAdam);
    expect(adam.placement).toBe('host');
    expect((adam as SparseAdam).beta1).toBe(0.5);
    expect(createSparseOptimizer({ kind: 'sgd', lr: 0.1, momentum: 0.9 })).toBeInstanceOf(SparseSgd);
    expect(() => createExpertTable({ rows: N, dim: D, name: 'v', placement: 'device' })).toThrow(/DeviceExpertTable 'v': needs the webgpu engine, the active one is wasm/);
    expect(() => createSparseOptimizer({ kind: 'adagrad', lr: 0.1 } as never)).toThrow(`createSparseOptimizer: kind must be 'adam' or 'sgd', got "adagrad"`);
    table.dispose();
    direct.dispose();
  });

  it('a host gradient reports its sum of squares as a tensor too', async () => {
    const table = new HostExpertTable({ rows: N, dim: D });
    const grad = table.createGradient();
    const values = Float32Array.from({ length: 2 * D }, (_, i) => i / 3 - 1);
    grad.accumulate(Int32Array.from([2, 5]), values);
    const sq = grad.sumOfSquaresTensor();
    expectClose(await sq.data(), [values.reduce((s, v) => s + v * v, 0)], { rtol: 1e-6 });
    sq.dispose();
    table.dispose();
  });
});
