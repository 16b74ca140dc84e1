// Axes: M rows, K contracted axis, P columns.
import * as tf from '@tensorflow/tfjs-core';
import { testRng } from '@peer/test-utils';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initBackend } from '../init-backend.js';
import { installWasmFixes, uninstallWasmFixes } from './install-wasm-fixes.js';
import { isSharedMemory, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { SMALL_MAT_MUL_MAX_B, SMALL_MAT_MUL_MAX_WORK, SMALL_MAT_MUL_MODULE, setSmallMatMulMaxWork, smallMatMulKernel, smallMatMulScratchBytes } from './small-mat-mul.js';
import type { WasmBackend } from './wasm-backend.js';

const backend = () => tf.backend() as unknown as WasmBackend;
const offset = (t: tf.Tensor) => backend().dataIdMap.get(t.dataId)!.memoryOffset;

/** Our kernel on two [M, K] and [K, P] wasm tensors: the output's float32 values. */
function ours(a: tf.Tensor2D, b: tf.Tensor2D): Float32Array {
  const kernel = smallMatMulKernel(backend());
  if (!kernel) throw new Error('no kernel');
  const [m, k] = a.shape;
  const p = b.shape[1];
  const out = backend().makeOutput([m, p], 'float32');
  const outTensor = tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
  const scratch = tf.engine().makeTensorFromTensorInfo(backend().makeOutput([smallMatMulScratchBytes(k) / 4], 'float32'));
  kernel(offset(a), offset(b), offset(outTensor), m, k, p, offset(scratch));
  const values = outTensor.dataSync() as Float32Array;
  tf.dispose([outTensor, scratch]);
  return values;
}

/** The engine's own 2-D matMul (XNNPACK) with the package's fixes off. */
function engines(a: tf.Tensor2D, b: tf.Tensor2D): Float32Array {
  uninstallWasmFixes();
  try {
    return tf.tidy(() => tf.matMul(a, b).dataSync() as Float32Array);
  } finally {
    installWasmFixes();
  }
}

/** Bit patterns, so that -0 and +0 (and NaN payloads) count as different. */
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

/** acc = +0; acc = fround(acc + fround(a * b)) over k in order (or backwards): XNNPACK's rounding. */
function sequentialF32(a: Float32Array, b: Float32Array, m: number, k: number, p: number, backwards: boolean): Float32Array {
  const out = new Float32Array(m * p);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < p; j++) {
      let acc = 0;
      for (let s = 0; s < k; s++) {
        const q = backwards ? k - 1 - s : s;
        acc = Math.fround(acc + Math.fround(a[i * k + q]! * b[q * p + j]!));
      }
      out[i * p + j] = acc;
    }
  }
  return out;
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', log: false });
});
afterAll(() => {
  installWasmFixes();
  setSmallMatMulMaxWork(undefined);
});

describe('small matMul kernel on the wasm heap', () => {
  // Odd sizes, K = 1, M = 1, P not a multiple of 4 or 8, P = 1, and tiles with every remainder.
  const SHAPES: [number, number, number][] = [
    [1, 1, 1],
    [1, 7, 1],
    [1, 1, 9],
    [5, 1, 3],
    [4, 8, 8],
    [3, 5, 7],
    [7, 13, 11],
    [9, 17, 19],
    [16, 16, 16],
    [33, 31, 29],
    [1, 128, 128],
    [128, 1, 128],
    [128, 128, 1],
    [128, 128, 128],
    [130, 67, 37],
    [64, 300, 23],
    [257, 64, 130],
    [6, 40, 1024],
  ];
  for (const [m, k, p] of SHAPES) {
    it(`gives the engine's XNNPACK bits and matches a float64 reference: M ${m} K ${k} P ${p}`, () => {
      const rng = testRng();
      const av = Float32Array.from(rng.normals(m * k));
      const bv = Float32Array.from(rng.normals(k * p));
      const a = tf.tensor2d(av, [m, k]);
      const b = tf.tensor2d(bv, [k, p]);
      const before = tf.memory().numTensors;
      const got = ours(a, b);
      const want = engines(a, b);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([a, b]);
      expect(bits(got), `seed ${rng.seed}`).toEqual(bits(want));
      // The same order emulated in float32 (Math.fround after each operation) gives the same bits.
      expect(bits(got), `seed ${rng.seed}`).toEqual(bits(sequentialF32(av, bv, m, k, p, false)));
      // The order matters: summing k backwards changes some bits once K is long enough.
      if (k >= 64) expect(bits(got)).not.toEqual(bits(sequentialF32(av, bv, m, k, p, true)));
      // Rounding of K sequential multiply-adds: |err| <= gamma_K * sum_k |a b| with gamma_K about K u.
      const u = 2 ** -24;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < p; j++) {
          let exact = 0;
          let magnitude = 0;
          for (let q = 0; q < k; q++) {
            exact += av[i * k + q]! * bv[q * p + j]!;
            magnitude += Math.abs(av[i * k + q]! * bv[q * p + j]!);
          }
          const err = Math.abs(got[i * p + j]! - exact);
          expect(err, `seed ${rng.seed} at ${i},${j}`).toBeLessThanOrEqual(1.01 * k * u * magnitude + 1e-30);
        }
      }
    });
  }

  it("gives the engine's bits for zeros, signed zeros, infinities and NaN", () => {
    const rng = testRng();
    const [m, k, p] = [9, 6, 13];
    const special = [0, -0, Infinity, -Infinity, NaN, 1e38, -1e38, 1e-45];
    const pick = () => (rng.int(3) === 0 ? special[rng.int(special.length)]! : rng.normals(1)[0]!);
    const av = Float32Array.from({ length: m * k }, pick);
    const bv = Float32Array.from({ length: k * p }, pick);
    // A row of a of negative zeros times positive b: each product is -0 and +0 + -0 is +0.
    av.fill(-0, 0, k);
    const a = tf.tensor2d(av, [m, k]);
    const b = tf.tensor2d(bv, [k, p]);
    const got = ours(a, b);
    const want = engines(a, b);
    tf.dispose([a, b]);
    // NaN results sit at the same places; their sign and payload are not compared (WebAssembly leaves
    // a NaN result's bits to the machine, and which operand's NaN an x64 add passes on depends on
    // register allocation).
    const canonical = (x: Float32Array) => bits(x.map((v) => (Number.isNaN(v) ? NaN : v)));
    expect(canonical(got), `seed ${rng.seed}`).toEqual(canonical(want));
    expect(got.filter((v) => Number.isNaN(v)).length).toBeGreaterThan(0);
    expect(Object.is(got[0], 0) || Number.isNaN(got[0])).toBe(true);
  });
});

describe('tf.matMul on wasm with small products on the kernel', () => {
  /** The kernel module's exports object (the one every call looks its function up in). */
  const exportsObject = () => {
    const memory = backend().wasm.asm?.memory ?? backend().wasm.wasmMemory;
    return kernelsOnHeap<{ mat_mul: (...args: number[]) => void }>(memory!, SMALL_MAT_MUL_MODULE.key, SMALL_MAT_MUL_MODULE.functions)!;
  };

  // [a stored shape, b stored shape, transposeA, transposeB, kernel calls expected]: single-batch
  // (XNNPACK's in the built-in kernel), per-batch, a shared b (one product), transposed operands.
  const CASES: [number[], number[], boolean, boolean, number][] = [
    [[37, 29], [29, 13], false, false, 1],
    [[1, 64], [64, 3], false, false, 1],
    [[29, 37], [13, 29], true, true, 1],
    [[3, 20, 24], [3, 24, 16], false, false, 3],
    [[2, 3, 24, 18], [3, 16, 24], true, true, 6],
    [[4, 18, 24], [24, 16], false, false, 1],
  ];
  for (const [aShape, bShape, tA, tB, calls] of CASES) {
    it(`gives the bits of the XNNPACK route: a ${JSON.stringify(aShape)} b ${JSON.stringify(bShape)} tA=${tA} tB=${tB}`, () => {
      const rng = testRng();
      const a = tf.tensor(Float32Array.from(rng.normals(aShape.reduce((p, d) => p * d, 1))), aShape);
      const b = tf.tensor(Float32Array.from(rng.normals(bShape.reduce((p, d) => p * d, 1))), bShape);
      const product = () => tf.tidy(() => tf.matMul(a, b, tA, tB).dataSync() as Float32Array);
      const before = tf.memory().numTensors;
      const spy = vi.spyOn(exportsObject(), 'mat_mul');
      try {
        setSmallMatMulMaxWork(0);
        const xnnpack = product();
        expect(spy).toHaveBeenCalledTimes(0);
        setSmallMatMulMaxWork(undefined);
        const small = product();
        expect(spy).toHaveBeenCalledTimes(calls);
        expect(bits(small), `seed ${rng.seed}`).toEqual(bits(xnnpack));
      } finally {
        spy.mockRestore();
        setSmallMatMulMaxWork(undefined);
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([a, b]);
    });
  }

  it('leaves products above the threshold to XNNPACK on this engine', () => {
    const spy = vi.spyOn(exportsObject(), 'mat_mul');
    try {
      // [M, 64] x [64, 2048] (b at SMALL_MAT_MUL_MAX_B): the most rows at the work threshold, then one more.
      expect(64 * 2048).toBe(SMALL_MAT_MUL_MAX_B);
      const m = Math.floor(SMALL_MAT_MUL_MAX_WORK / (64 * 2048));
      tf.tidy(() => tf.matMul(tf.ones([m + 1, 64]), tf.ones([64, 2048])).dataSync());
      expect(spy).toHaveBeenCalledTimes(0);
      // A b one column wider than SMALL_MAT_MUL_MAX_B stays on XNNPACK even for a single row.
      tf.tidy(() => tf.matMul(tf.ones([1, 64]), tf.ones([64, 2049])).dataSync());
      expect(spy).toHaveBeenCalledTimes(0);
      tf.tidy(() => tf.matMul(tf.ones([m, 64]), tf.ones([64, 2048])).dataSync());
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
    expect(() => setSmallMatMulMaxWork(-1)).toThrow(/work must be >= 0, got -1/);
  });
});

describe('the small kernel on the threaded engine', () => {
  it('runs on the shared heap of 2 threads and gives the bits of XNNPACK on its pool', async () => {
    const started = await initBackend({ backend: 'wasm', threads: 2, log: false });
    try {
      expect(started.threads).toBe(2);
      expect(isSharedMemory(backend().wasm.wasmMemory ?? backend().wasm.asm!.memory!)).toBe(true);
      const rng = testRng();
      for (const [aShape, bShape, calls] of [
        [[128, 128], [128, 128], 1],
        [[3, 37, 29], [3, 29, 13], 3],
      ] as [number[], number[], number][]) {
        const a = tf.tensor(Float32Array.from(rng.normals(aShape.reduce((p, d) => p * d, 1))), aShape);
        const b = tf.tensor(Float32Array.from(rng.normals(bShape.reduce((p, d) => p * d, 1))), bShape);
        const product = () => tf.tidy(() => tf.matMul(a, b).dataSync() as Float32Array);
        const memory = backend().wasm.wasmMemory ?? backend().wasm.asm!.memory!;
        const spy = vi.spyOn(kernelsOnHeap<{ mat_mul: () => void }>(memory, SMALL_MAT_MUL_MODULE.key, SMALL_MAT_MUL_MODULE.functions)!, 'mat_mul');
        try {
          setSmallMatMulMaxWork(0);
          const xnnpack = product();
          setSmallMatMulMaxWork(undefined);
          const small = product();
          expect(spy).toHaveBeenCalledTimes(calls);
          expect(bits(small), `seed ${rng.seed} a ${JSON.stringify(aShape)}`).toEqual(bits(xnnpack));
        } finally {
          spy.mockRestore();
          setSmallMatMulMaxWork(undefined);
          tf.dispose([a, b]);
        }
      }
    } finally {
      await initBackend({ backend: 'wasm', threads: 1, log: false });
    }
  });
});
