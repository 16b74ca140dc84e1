// The device optimizers on the webgpu engine (SwiftShader in CI: tiny shapes) against the host ones
// on the same gradients: rows, moments and step counts after several steps (with weight decay,
// clipping and a learning-rate scale), unsharded and in row shards; state entries that load across
// placements; no tensors left behind by a step.
// Axes: N table rows, D row width, L rows of one accumulate call.
import { initBackend, webgpuSkipReason } from '@peer/backend';
import { expectClose, expectNoLeaks, testRng } from '@peer/test-utils';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { float32ToFloat16, float16ToFloat32 } from './half-float.js';
import { DeviceExpertTable } from './device-expert-table.js';
import { DeviceSparseAdam, DeviceSparseSgd } from './device-sparse-optimizer.js';
import { HostExpertTable } from './host-expert-table.js';
import type { NamedArray } from './named-array.js';
import { SparseAdam } from './sparse-adam.js';
import { SparseSgd } from './sparse-sgd.js';
import { createExpertTable, createSparseOptimizer } from './table-factory.js';

const skip = webgpuSkipReason();
const rng = testRng();
const [N, D, L] = [40, 8, 24];
/** 16 rows a shard: 3 shards. */
const SMALL_SHARD = 16 * D * 4;

/** Gradient rows with repeats within a call. */
function gradient(): { rows: Int32Array; values: Float32Array } {
  const hot = rng.int(N);
  return { rows: Int32Array.from({ length: L }, () => (rng.float() < 0.3 ? hot : rng.int(N))), values: Float32Array.from(rng.normals(L * D)) };
}

async function entriesOf(...owners: Array<{ prepareState(): Promise<void>; stateEntries(prefix?: string): NamedArray[] }>): Promise<Map<string, NamedArray>> {
  for (const o of owners) await o.prepareState();
  return new Map(owners.flatMap((o) => o.stateEntries('layer.')).map((e) => [e.name, { ...e, data: e.data.slice() }]));
}

/**
 * The same state entries, integers exactly, floats within `rtol` or the rounding two float32
 * implementations can differ by after `steps` optimizer steps: about one u (2^-24) per step and
 * implementation of the magnitudes an element passed through, bounded by the entry's largest |value|
 * (a fixed atol fails where an element ends near 0 at some seeds). `steps` 0: a copy, bit for bit.
 */
function expectSameState(got: Map<string, NamedArray>, want: Map<string, NamedArray>, label: string, rtol: number, steps: number): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, w] of want) {
    const g = got.get(name)!;
    expect({ dtype: g.dtype, shape: g.shape }, name).toEqual({ dtype: w.dtype, shape: w.shape });
    if (w.dtype === 'I32') expect(Array.from(g.data as Int32Array), `${name} ${label}`).toEqual(Array.from(w.data as Int32Array));
    else {
      const largest = (w.data as Float32Array).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expectClose(g.data as Float32Array, w.data as Float32Array, { rtol, atol: 2 * steps * 2 ** -24 * largest, label: `${name} ${label}` });
    }
  }
}

describe.skipIf(skip !== undefined)(`device sparse optimizers on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });

  it('DeviceSparseAdam matches SparseAdam over several steps (decay, clipping, lr scale), unsharded and in shards', async () => {
    const options = { lr: 0.01, weightDecay: 0.1, clipNorm: 4, beta1: 0.8, beta2: 0.99, eps: 1e-6 };
    const steps = [gradient(), gradient(), gradient(), gradient()];
    const host = new HostExpertTable({ rows: N, dim: D, seed: 11, name: 'u' });
    const hostAdam = new SparseAdam(options, [host]);
    const hostGrad = host.createGradient();
    steps.forEach((g, i) => {
      hostGrad.accumulate(g.rows, g.values);
      hostAdam.step(host, hostGrad, i === 2 ? 0.5 : 1);
    });
    const want = await entriesOf(host, hostAdam);
    for (const maxShardBytes of [undefined, SMALL_SHARD]) {
      const table = new DeviceExpertTable({ rows: N, dim: D, seed: 11, name: 'u', maxShardBytes });
      const adam = new DeviceSparseAdam(options, [table]);
      const grad = table.createGradient();
      steps.forEach((g, i) => {
        grad.accumulate(g.rows, g.values);
        const result = adam.step(table, grad, i === 2 ? 0.5 : 1);
        expect(result.gradNorm).toBeUndefined();
      });
      expectSameState(await entriesOf(table, adam), want, `seed ${rng.seed}, shard bytes ${maxShardBytes}`, 1e-5, steps.length);
      adam.dispose();
      table.dispose();
    }
  });

  it('DeviceSparseSgd matches SparseSgd, with and without momentum', async () => {
    const steps = [gradient(), gradient(), gradient()];
    for (const momentum of [0, 0.9]) {
      const options = { lr: 0.05, weightDecay: 0.01, momentum, clipNorm: 3 };
      const host = new HostExpertTable({ rows: N, dim: D, seed: 2, name: 'v' });
      const hostSgd = new SparseSgd(options, [host]);
      const hostGrad = host.createGradient();
      const table = new DeviceExpertTable({ rows: N, dim: D, seed: 2, name: 'v', maxShardBytes: SMALL_SHARD });
      const sgd = new DeviceSparseSgd(options, [table]);
      const grad = table.createGradient();
      for (const g of steps) {
        hostGrad.accumulate(g.rows, g.values);
        hostSgd.step(host, hostGrad);
        grad.accumulate(g.rows, g.values);
        sgd.step(table, grad);
      }
      expectSameState(await entriesOf(table, sgd), await entriesOf(host, hostSgd), `momentum ${momentum}, seed ${rng.seed}`, 1e-5, steps.length);
      sgd.dispose();
      table.dispose();
    }
  });

  it('state saved on the device loads on the host and back (any sharding), and training goes on the same', async () => {
    const options = { lr: 0.02, weightDecay: 0.05 };
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 4, name: 'u' });
    const adam = new DeviceSparseAdam(options, [table]);
    const grad = table.createGradient();
    for (let i = 0; i < 2; i++) {
      const g = gradient();
      grad.accumulate(g.rows, g.values);
      adam.step(table, grad);
    }
    const saved = await entriesOf(table, adam);
    expect([...saved.keys()].sort()).toEqual(['layer.u', 'layer.u.adam.m', 'layer.u.adam.steps', 'layer.u.adam.v']);
    const host = new HostExpertTable({ rows: N, dim: D, init: { kind: 'zeros' }, name: 'u' });
    const hostAdam = new SparseAdam(options, [host]);
    host.loadStateEntries('layer.', (n) => saved.get(n));
    hostAdam.loadStateEntries('layer.', (n) => saved.get(n));
    expectSameState(await entriesOf(host, hostAdam), saved, 'device -> host', 0, 0);
    // One more step on both, from the same state.
    const g = gradient();
    const hostGrad = host.createGradient();
    hostGrad.accumulate(g.rows, g.values);
    hostAdam.step(host, hostGrad);
    grad.accumulate(g.rows, g.values);
    adam.step(table, grad);
    expectSameState(await entriesOf(table, adam), await entriesOf(host, hostAdam), `after a step, seed ${rng.seed}`, 1e-5, 1);
    // Host -> a sharded device table.
    const back = await entriesOf(host, hostAdam);
    const sharded = new DeviceExpertTable({ rows: N, dim: D, init: { kind: 'zeros' }, name: 'u', maxShardBytes: SMALL_SHARD });
    const shardedAdam = new DeviceSparseAdam(options, [sharded]);
    sharded.loadStateEntries('layer.', (n) => back.get(n));
    shardedAdam.loadStateEntries('layer.', (n) => back.get(n));
    expectSameState(await entriesOf(sharded, shardedAdam), back, 'host -> sharded device', 0, 0);
    expect(() => shardedAdam.loadStateEntries('layer.', (n) => (n.endsWith('.v') ? undefined : back.get(n)))).toThrow("state entry 'layer.u.adam.v' is missing");
    [adam, shardedAdam].forEach((o) => o.dispose());
    [table, sharded].forEach((t) => t.dispose());
  });

  it('a checkpoint written from the device restores into host and sharded device tables (F32, and F16 widened)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peer-device-ckpt-'));
    try {
      const table = new DeviceExpertTable({ rows: N, dim: D, seed: 8, name: 'u' });
      const grad = table.createGradient();
      const adam = new DeviceSparseAdam({ lr: 0.1 }, [table]);
      const g = gradient();
      grad.accumulate(g.rows, g.values);
      adam.step(table, grad);
      const saved = await entriesOf(table);
      const rows = saved.get('layer.u')!.data as Float32Array;
      saveCheckpoint(join(dir, 'f32'), [...saved.values()]);
      saveCheckpoint(join(dir, 'f16'), [{ name: 'layer.u', dtype: 'F16', shape: [N, D], data: float32ToFloat16(rows) }]);
      for (const [kind, want] of [['f32', rows], ['f16', float16ToFloat32(float32ToFloat16(rows))]] as const) {
        const source = loadCheckpoint(join(dir, kind));
        const host = new HostExpertTable({ rows: N, dim: D, init: { kind: 'zeros' }, name: 'u' });
        const sharded = new DeviceExpertTable({ rows: N, dim: D, init: { kind: 'zeros' }, name: 'u', maxShardBytes: SMALL_SHARD });
        host.restoreFrom('layer.', source);
        sharded.restoreFrom('layer.', source);
        await sharded.prepareState();
        expect(Array.from(host.data), kind).toEqual(Array.from(want));
        expect(Array.from(sharded.stateEntries()[0]!.data as Float32Array), kind).toEqual(Array.from(want));
        source.close();
        host.dispose();
        sharded.dispose();
      }
      adam.dispose();
      table.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a step leaves no tensors behind', async () => {
    const table = new DeviceExpertTable({ rows: N, dim: D, seed: 1, maxShardBytes: SMALL_SHARD });
    const adam = new DeviceSparseAdam({ lr: 0.01, clipNorm: 1 }, [table]);
    const grad = table.createGradient();
    await expectNoLeaks(async () => {
      const g = gradient();
      grad.accumulate(g.rows, g.values);
      adam.step(table, grad);
      await table.prepareState();
    });
    adam.dispose();
    table.dispose();
  });

  it('the factories make device tables and optimizers on webgpu, host ones when asked, and refuse mixed placements', () => {
    const device = createExpertTable({ rows: N, dim: D, name: 'u' });
    const host = createExpertTable({ rows: N, dim: D, name: 'v', placement: 'host' });
    expect(device).toBeInstanceOf(DeviceExpertTable);
    expect(host).toBeInstanceOf(HostExpertTable);
    expect(createSparseOptimizer({ kind: 'adam', lr: 1e-3 }, [device])).toBeInstanceOf(DeviceSparseAdam);
    expect(createSparseOptimizer({ kind: 'sgd', lr: 1e-3 }, [device])).toBeInstanceOf(DeviceSparseSgd);
    expect(createSparseOptimizer({ kind: 'adam', lr: 1e-3 }, [host])).toBeInstanceOf(SparseAdam);
    expect(() => createSparseOptimizer({ kind: 'adam', lr: 1e-3 }, [device, host])).toThrow(/createSparseOptimizer: the tables live in different places \('u' device, 'v' host\)/);
    expect(() => new DeviceSparseAdam({ lr: 1e-3 }, [host])).toThrow("DeviceSparseAdam: table 'v' is not a device table");
    device.dispose();
    host.dispose();
  });
});
