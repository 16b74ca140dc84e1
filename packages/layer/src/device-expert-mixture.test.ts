// The device expert mixture (tfjs ops, index tensor) against the host mixture (JS loops on host
// tables), on fresh random inputs: outputs, input gradients and summed row gradients; its input
// gradients against finite differences; and on the webgpu engine (SwiftShader in CI) against the
// host mixture on the cpu engine, with no synchronous read. The tables are createExpertTable's for
// the active engine: host tables reading the index tensor on the test engine, DeviceExpertTables on
// webgpu.
// Axes: T tokens, R rows per token, D model width, N table rows.
import * as tf from '@tensorflow/tfjs-core';
import { webgpuSkipReason, initBackend } from '@peer/backend';
import { createExpertTable, DeviceRowGradient, HostExpertTable, RowSparseGrad, type ExpertTable, type RowGradient } from '@peer/expert-store';
import { checkGradients, expectNoLeaks, testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExpertActivation } from './config.js';
import { deviceExpertMixture } from './device-expert-mixture.js';
import { expertMixture } from './expert-mixture.js';

const rng = testRng();
const TOL = 1e-4;

interface Problem {
  T: number;
  R: number;
  D: number;
  N: number;
  x: Float32Array;
  g: Float32Array;
  dy: Float32Array;
  indices: Int32Array;
  down: Float32Array;
  up: Float32Array;
}

function problem(T: number, R: number, D: number, N: number): Problem {
  const normals = (n: number, std = 1) => Float32Array.from(rng.normals(n, std));
  // Few rows for many occurrences: rows repeat within and across tokens.
  return { T, R, D, N, x: normals(T * D), g: normals(T * R), dy: normals(T * D), indices: Int32Array.from({ length: T * R }, () => rng.int(N)), down: normals(N * D, 0.5), up: normals(N * D, 0.5) };
}

/** [y, dx, dg, dDown, dUp] (row gradients dense [N, D]) of the loss sum(y * dy). */
type Results = Float32Array[];

/** The host mixture on host tables, on the active (host) engine. */
async function hostResults(p: Problem, activation: ExpertActivation): Promise<Results> {
  const down = HostExpertTable.fromEntry({ name: 'down', dtype: 'F32', shape: [p.N, p.D], data: p.down.slice() });
  const up = HostExpertTable.fromEntry({ name: 'up', dtype: 'F32', shape: [p.N, p.D], data: p.up.slice() });
  const downGrad = down.createGradient();
  const upGrad = up.createGradient();
  const tables = { down, up, downGrad, upGrad };
  const out = tf.tidy(() => {
    const x = tf.tensor2d(p.x, [p.T, p.D]);
    const g = tf.tensor2d(p.g, [p.T, p.R]);
    const y = expertMixture(x, g, p.indices, tables, { activation });
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(expertMixture(a as tf.Tensor2D, b as tf.Tensor2D, p.indices, tables, { activation }), tf.tensor2d(p.dy, [p.T, p.D]))))([x, g]);
    return [y, ...grads].map((t) => Float32Array.from(t.dataSync()));
  });
  const result = [...out, await denseGradient(downGrad, p.N, p.D), await denseGradient(upGrad, p.N, p.D)];
  release(down, up, downGrad, upGrad);
  return result;
}

/** createExpertTable's table for the active engine, holding `values` [N, D]. */
function engineTable(name: string, rows: number, dim: number, values: Float32Array): ExpertTable {
  const table = createExpertTable({ name, rows, dim, init: { kind: 'zeros' } });
  table.loadStateEntries('', () => ({ name, dtype: 'F32', shape: [rows, dim], data: values.slice() }));
  return table;
}

/** A host or device row gradient as a dense [N, D] array, read asynchronously. */
async function denseGradient(grad: RowGradient, rows: number, dim: number): Promise<Float32Array> {
  const dense = new Float32Array(rows * dim);
  let slotRows: ArrayLike<number> = [];
  let values: Float32Array<ArrayBufferLike> = new Float32Array(0);
  if (grad instanceof RowSparseGrad) {
    [slotRows, values] = [grad.uniqueRows(), grad.rowGrads()];
  } else if (grad instanceof DeviceRowGradient) {
    const summed = grad.summedRows();
    if (summed) [slotRows, values] = [await summed.slotRows.data(), (await summed.grads.data()) as Float32Array];
  } else {
    throw new Error('denseGradient: not a RowSparseGrad or DeviceRowGradient');
  }
  // Unused device slots hold row -1 (and a zero gradient).
  for (let s = 0; s < slotRows.length; s++) {
    const row = slotRows[s]!;
    if (row >= 0) dense.set(values.subarray(s * dim, (s + 1) * dim), row * dim);
  }
  return dense;
}

/** The device mixture on createExpertTable's tables, on the active engine, read asynchronously. */
async function deviceResults(p: Problem, activation: ExpertActivation): Promise<Results> {
  const down = engineTable('down', p.N, p.D, p.down);
  const up = engineTable('up', p.N, p.D, p.up);
  const downGrad = down.createGradient();
  const upGrad = up.createGradient();
  const tables = { down, up, downGrad, upGrad };
  const outs = tf.tidy(() => {
    const x = tf.tensor2d(p.x, [p.T, p.D]);
    const g = tf.tensor2d(p.g, [p.T, p.R]);
    const indices = tf.tensor2d(p.indices, [p.T, p.R], 'int32');
    const y = deviceExpertMixture(x, g, indices, tables, { activation });
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(deviceExpertMixture(a as tf.Tensor2D, b as tf.Tensor2D, indices, tables, { activation }), tf.tensor2d(p.dy, [p.T, p.D]))))([x, g]);
    return [y, ...grads];
  });
  try {
    const read = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    return [...read, await denseGradient(downGrad, p.N, p.D), await denseGradient(upGrad, p.N, p.D)];
  } finally {
    tf.dispose(outs);
    release(down, up, downGrad, upGrad);
  }
}

/** Disposes tables and clears gradients (a device gradient then holds no tensor). */
function release(...parts: (ExpertTable | RowGradient)[]): void {
  for (const part of parts) {
    if ('clear' in part) part.clear();
    else part.dispose();
  }
}

function scaledError(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-30);
}

const NAMES = ['y', 'dx', 'dg', 'd down rows', 'd up rows'];

function expectSame(device: Results, host: Results, label: string): void {
  expect(device.length).toBe(host.length);
  NAMES.forEach((name, i) => {
    expect(device[i]!.length, name).toBe(host[i]!.length);
    expect(scaledError(device[i]!, host[i]!), `${label} ${name} (seed ${rng.seed})`).toBeLessThanOrEqual(TOL);
  });
}

describe('deviceExpertMixture on the test engine', () => {
  it.each(['gelu', 'relu', 'gelu-tanh'] as const)('matches the host mixture (%s)', async (activation) => {
    const p = problem(5, 6, 8, 7);
    expectSame(await deviceResults(p, activation), await hostResults(p, activation), activation);
  });

  it('has the input gradients of finite differences', () => {
    const p = problem(3, 4, 6, 5);
    const down = engineTable('down', p.N, p.D, p.down);
    const up = engineTable('up', p.N, p.D, p.up);
    const tables = { down, up, downGrad: down.createGradient(), upGrad: up.createGradient() };
    const indices = tf.tensor2d(p.indices, [p.T, p.R], 'int32');
    const dy = tf.tensor2d(p.dy, [p.T, p.D]);
    const x = tf.tensor2d(p.x, [p.T, p.D]);
    const g = tf.tensor2d(p.g, [p.T, p.R]);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(deviceExpertMixture(a as tf.Tensor2D, b as tf.Tensor2D, indices, tables, { activation: 'gelu' }), dy)) as tf.Scalar;
    const result = checkGradients(f, [x, g], { label: `deviceExpertMixture (seed ${rng.seed})` });
    expect(result.maxRelError).toBeLessThan(2e-2);
    tf.dispose([indices, dy, x, g]);
    release(down, up, tables.downGrad, tables.upGrad);
  });

  it('rejects indices that are not an int32 tensor of T * R rows', () => {
    const down = engineTable('down', 4, 2, new Float32Array(8));
    const tables = { down, up: down, downGrad: down.createGradient(), upGrad: down.createGradient() };
    const x = tf.zeros([3, 2]) as tf.Tensor2D;
    const g = tf.zeros([3, 2]) as tf.Tensor2D;
    const wrongDtype = tf.zeros([3, 2]);
    const wrongSize = tf.zeros([5], 'int32');
    expect(() => deviceExpertMixture(x, g, wrongDtype, tables, { activation: 'relu' })).toThrow('expertMixture: expert rows must be an int32 tensor, got float32');
    expect(() => deviceExpertMixture(x, g, wrongSize, tables, { activation: 'relu' })).toThrow('expertMixture: 5 expert rows for 3 tokens x 2 experts');
    tf.dispose([x, g, wrongDtype, wrongSize]);
    release(down, tables.downGrad, tables.upGrad);
  });
});

const skip = webgpuSkipReason();
if (skip) console.warn(`webgpu mixture tests skipped: ${skip}`);

describe.skipIf(skip !== undefined)(`deviceExpertMixture on webgpu${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let hostEngine = '';
  beforeAll(async () => {
    hostEngine = tf.getBackend();
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await tf.setBackend(hostEngine);
  });

  it('matches the host mixture on the cpu engine and leaks nothing', async () => {
    const p = problem(4, 6, 8, 9);
    const device = await deviceResults(p, 'gelu');
    await tf.setBackend('cpu');
    const host = await hostResults(p, 'gelu');
    await tf.setBackend('webgpu');
    expectSame(device, host, 'webgpu vs cpu');
    await expectNoLeaks(() => deviceResults(p, 'relu'), { label: 'webgpu mixture' });
  });
});
