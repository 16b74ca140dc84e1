// Custom programs on the webgpu engine (SwiftShader in CI): a new output, uniforms of both types,
// int32 inputs, and an in-place write that a later read sees even after an earlier read.
// Axes: L elements.
import { testRng } from '@peer/test-utils';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../init-backend.js';
import { runDeviceProgram } from './device-program.js';
import { webgpuSkipReason } from './webgpu-test-gate.js';

const skip = webgpuSkipReason();
const rng = testRng();

describe.skipIf(skip !== undefined)(`runDeviceProgram${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(async () => {
    await initBackend({ backend: 'webgpu', allowFallbackAdapter: true, log: false });
  });
  afterAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  it('computes a new output from float and int inputs and uniforms', async () => {
    const L = 300;
    const a = Float32Array.from(rng.normals(L));
    const k = Int32Array.from({ length: L }, () => rng.int(L));
    const before = tf.memory().numTensors;
    const at = tf.tensor1d(a);
    const kt = tf.tensor1d(k, 'int32');
    const out = runDeviceProgram({
      name: 'test_axpb',
      inputs: [['a', at], ['perm', kt]],
      outputShape: [L],
      outputDtype: 'float32',
      threads: L,
      uniforms: [{ name: 'scale', type: 'f32', value: 2.5 }, { name: 'shift', type: 'i32', value: 3 }],
      main: '  result[index] = a[perm[index]] * uniforms.scale + f32(uniforms.shift);',
    });
    const got = await out.data();
    for (let i = 0; i < L; i++) expect(got[i], `element ${i} (seed ${rng.seed})`).toBeCloseTo(Math.fround(a[k[i]!]! * 2.5) + 3, 5);
    tf.dispose([at, kt, out]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('writes in place into an existing tensor, and a read after an earlier read sees the new values', async () => {
    const L = 70;
    const a = Float32Array.from(rng.normals(L));
    const t = tf.tensor1d(a);
    expect(Array.from(await t.data())).toEqual(Array.from(a));
    const back = runDeviceProgram({ name: 'test_double', inputs: [], into: t, threads: L, main: '  result[index] = result[index] * 2.0;' });
    expect(back).toBe(t);
    expect(Array.from(await t.data())).toEqual(Array.from(a, (v) => Math.fround(v * 2)));
    t.dispose();
  });

  it('binds inputs the code does not read (the layout would drop them)', async () => {
    const a = tf.tensor1d([1, 2, 3]);
    const unused = tf.tensor1d([7], 'int32');
    const b = tf.tensor1d([10, 20, 30]);
    const out = runDeviceProgram({ name: 'test_unused', inputs: [['a', a], ['unused', unused], ['b', b]], outputShape: [3], outputDtype: 'float32', threads: 3, main: '  result[index] = b[index] - a[index];' });
    expect(Array.from(await out.data())).toEqual([9, 18, 27]);
    tf.dispose([a, unused, b, out]);
  });

  it('covers every index when the dispatch is wider than one grid dimension (the engine folds it)', async () => {
    // 65,535 workgroups of 64 is the most one dimension takes; one more workgroup needs a second.
    const threads = 65535 * 64 + 129;
    const out = runDeviceProgram({ name: 'test_iota', inputs: [], outputShape: [threads], outputDtype: 'int32', threads, main: '  result[index] = index;' });
    const got = (await out.data()) as Int32Array;
    let wrong = -1;
    for (let i = 0; i < threads && wrong < 0; i++) if (got[i] !== i) wrong = i;
    expect(wrong).toBe(-1);
    out.dispose();
  });

  it('refuses input names the engine uses itself', () => {
    const t = tf.tensor1d([1]);
    expect(() => runDeviceProgram({ name: 'bad', inputs: [['getX', t]], outputShape: [1], outputDtype: 'float32', threads: 1, main: '' })).toThrow(
      /runDeviceProgram 'bad': 'getX' cannot name an input or uniform/,
    );
    t.dispose();
  });
});
