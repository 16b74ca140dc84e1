import { describe, expect, it } from 'vitest';
import { activateArray, activationDerivativeArray } from '../ops/activation.js';
import { Rng } from '../rng.js';
import { Arena } from '../wasm-memory/arena.js';
import { kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { GATED_ACTIVATION_MODULE } from './gated-activation-kernels.js';

interface Kernels {
  exp_f64(x: number, out: number, n: number): void;
  gelu_forward(a: number, g: number, z: number, w: number, start: number, end: number): void;
  relu_forward(a: number, g: number, z: number, w: number, start: number, end: number): void;
  gelu_backward(a: number, g: number, z: number, s: number, da: number, dg: number, start: number, end: number): void;
  relu_backward(a: number, g: number, z: number, s: number, da: number, dg: number, start: number, end: number): void;
}

const seed = Number(process.env.PEER_TEST_SEED ?? Date.now() % 2 ** 31);

function setup(bytes: number): { arena: Arena; kernels: Kernels } {
  const arena = Arena.create(bytes, false)!;
  const kernels = kernelsOnHeap<Kernels>(arena.memory, GATED_ACTIVATION_MODULE.key, GATED_ACTIVATION_MODULE.functions);
  if (!kernels) throw new Error('the gated activation kernels do not compile');
  return { arena, kernels };
}

/** Bits of a float64 as a string (NaNs compare as NaN, whatever their payload). */
const bits64 = (v: number) => (Number.isNaN(v) ? 'NaN' : new BigUint64Array(new Float64Array([v]).buffer)[0]!.toString(16));
const bits32 = (v: number) => (Number.isNaN(v) ? 'NaN' : (new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 0).toString(16));

describe(`the wasm exp (seed ${seed})`, () => {
  it("equals Math.exp to the last bit across every branch of V8's algorithm", () => {
    const rng = new Rng(seed);
    const special = [0, -0, 1, -1, 0.5, -0.5, Infinity, -Infinity, NaN, 2 ** -29, -(2 ** -29), 2 ** -28, 1e-300, 0.34657359027997264, 0.3465735902799727, 1.0397207708399179, 1.039720770839918];
    special.push(709.782712893384, 709.7827128933841, 709.78, -745.1332191019411, -745.1332191019412, -745.13, -708.39, -708.4, -709, -720, -744.4, 709.5, 709.7);
    const values: number[] = [...special];
    for (let i = 0; i < 20000; i++) values.push(rng.uniform(-760, 760));
    for (let i = 0; i < 20000; i++) values.push(rng.uniform(-1.2, 1.2));
    for (let i = 0; i < 5000; i++) values.push(rng.uniform(-750, -700), rng.uniform(700, 712), (rng.float() - 0.5) * 2 ** -(20 + rng.int(20)));
    // Any bit pattern.
    const raw = new Float64Array(5000);
    const words = new Uint32Array(raw.buffer);
    for (let i = 0; i < words.length; i++) words[i] = rng.int(2 ** 32);
    values.push(...raw);
    const n = values.length;
    const { arena, kernels } = setup(16 * n + 4096);
    const xAt = arena.alloc(8 * n)!;
    const outAt = arena.alloc(8 * n)!;
    new Float64Array(arena.memory.buffer, xAt, n).set(values);
    kernels.exp_f64(xAt, outAt, n);
    const out = new Float64Array(arena.memory.buffer, outAt, n);
    const wrong: string[] = [];
    for (let i = 0; i < n; i++) {
      if (bits64(out[i]!) !== bits64(Math.exp(values[i]!))) wrong.push(`exp(${values[i]}) = ${out[i]}, Math.exp: ${Math.exp(values[i]!)}`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });
});

describe(`the gated activation kernels (seed ${seed})`, () => {
  for (const activation of ['gelu', 'relu'] as const) {
    it(`${activation}: forward and backward equal the JS loops bit for bit, on any range of elements`, () => {
      const rng = new Rng(seed);
      const n = 3000 + rng.int(2000);
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.int(10) === 0 ? rng.uniform(-60, 60) : 3 * rng.normal();
      a.set([0, -0, 1, -1, 40, -40, 1e-30, -1e-30, 3.4e38, -3.4e38, Infinity, -Infinity, NaN, 1e-45, -1e-45]);
      const g = Float32Array.from({ length: n }, () => rng.float());
      const s = Float32Array.from({ length: n }, () => rng.normal());
      // The JS loops and the mixture's products (layer's expert-mixture.ts).
      const z = new Float32Array(n);
      activateArray(a, activation, z);
      const w = Float32Array.from(z, (v, i) => g[i]! * v);
      const d = new Float32Array(n);
      activationDerivativeArray(a, activation, d);
      const da = Float32Array.from(d, (v, i) => g[i]! * s[i]! * v);
      const dg = Float32Array.from(z, (v, i) => v * s[i]!);

      const { arena, kernels } = setup(40 * n + 4096);
      const at = (values: Float32Array | number) => {
        const offset = arena.alloc(4 * n)!;
        if (typeof values !== 'number') new Float32Array(arena.memory.buffer, offset, n).set(values);
        return offset;
      };
      const [aAt, gAt, sAt, zAt, wAt, daAt, dgAt] = [at(a), at(g), at(s), at(0), at(0), at(0), at(0)];
      // Two calls over two ranges, as the pool splits a pass.
      const cut = rng.int(n);
      for (const [start, end] of [[0, cut], [cut, n]] as const) {
        kernels[`${activation}_forward`](aAt, gAt, zAt, wAt, start, end);
        kernels[`${activation}_backward`](aAt, gAt, zAt, sAt, daAt, dgAt, start, end);
      }
      const read = (offset: number) => Array.from(new Float32Array(arena.memory.buffer, offset, n), bits32);
      expect(read(zAt)).toEqual(Array.from(z, bits32));
      expect(read(wAt)).toEqual(Array.from(w, bits32));
      expect(read(daAt)).toEqual(Array.from(da, bits32));
      expect(read(dgAt)).toEqual(Array.from(dg, bits32));
      // And the JS loops are gelu within float32 rounding of a float64 reference (erf by its series).
      if (activation === 'gelu') {
        for (const v of [-3, -1, -0.25, 0.5, 2]) {
          let erf = 0;
          let term = (2 / Math.sqrt(Math.PI)) * (v / Math.SQRT2);
          for (let k = 0; k < 60; k++) {
            erf += term / (2 * k + 1);
            term *= -((v / Math.SQRT2) ** 2) / (k + 1);
          }
          const out = new Float32Array(1);
          activateArray(Float32Array.of(v), 'gelu', out);
          expect(out[0]).toBeCloseTo(0.5 * v * (1 + erf), 6);
        }
      }
    });
  }
});
