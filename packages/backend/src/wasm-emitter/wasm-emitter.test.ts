// N floats (a multiple of 4), read 4 at a time as f32x4 lanes.
import { expectClose, testRng } from '@peer/test-utils';
import { describe, expect, it } from 'vitest';
import { emitModule, F32, FunctionBuilder, I32, Op, rowLoop, V128 } from './wasm-emitter.js';

// The project compiles without the DOM lib, so the few WebAssembly JS API pieces used are typed here.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports?: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** sum(src, nBytes, out): *out = sum of the floats at src (f32x4 partial sums, then the 4 lanes). */
function buildSum(): FunctionBuilder {
  const [src, nBytes, out] = [0, 1, 2];
  const f = new FunctionBuilder(3);
  const j = f.local(I32);
  const acc = f.local(V128);
  f.v128Zero().set(acc);
  f.forLoop(j, nBytes, 16, () => {
    f.get(acc).get(src).get(j).add().v128Load().f32x4Add().set(acc);
  });
  f.get(out).get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add();
  f.get(acc).f32x4ExtractLane(2).f32Add().get(acc).f32x4ExtractLane(3).f32Add().f32Store();
  return f;
}

/** rescale(x, y, n, a): y[i] = (x[i] * a - y[i]) / sqrt(a), for i < n (a float count; the loop walks bytes). */
function buildRescale(): FunctionBuilder {
  const [x, y, n, a] = [0, 1, 2, 3];
  const f = new FunctionBuilder([I32, I32, I32, F32]);
  const i = f.local(I32);
  const end = f.local(I32);
  const av = f.local(V128);
  f.get(n).i32(4).mul().set(end);
  f.get(a).f32x4Splat().set(av);
  f.i32(0).set(i);
  // A computed step (pushes 64 / 4) exercises the function form of the loop step and divU.
  f.whileBelow(i, end, () => f.i32(64).i32(4).divU(), () => {
    f.get(y).get(i).add();
    f.get(x).get(i).add().v128Load().get(av).f32x4Mul();
    f.get(y).get(i).add().v128Load().f32x4Sub();
    f.get(av).f32x4Sqrt().f32x4Div();
    f.v128Store();
  });
  return f;
}

describe('emitModule', () => {
  it('emits a valid module with an exported memory whose SIMD sum matches a plain sum', () => {
    const bytes = emitModule([{ name: 'sum', builder: buildSum() }], { kind: 'exported', initialPages: 1 });
    expect(wasm.validate(bytes)).toBe(true);
    const { exports } = new wasm.Instance(new wasm.Module(bytes));
    const memory = exports.memory as WasmMemory;
    const sum = exports.sum as (src: number, nBytes: number, out: number) => void;

    const rng = testRng();
    const n = 4 * (1 + rng.int(500));
    const data = Float32Array.from(rng.normals(n));
    new Float32Array(memory.buffer, 16, n).set(data);
    const outOffset = 16 + 4 * n;
    sum(16, 4 * n, outOffset);
    let expected = 0;
    for (const v of data) expected += v;
    const got = new Float32Array(memory.buffer, outOffset, 1)[0]!;
    expectClose([got], [expected], { rtol: 1e-5, atol: 1e-4 * Math.sqrt(n), label: `n ${n}, seed ${rng.seed}` });
  });

  it('emits a valid module that imports env.memory and takes f32 parameters', () => {
    const bytes = emitModule([{ name: 'rescale', builder: buildRescale() }], { kind: 'imported', maxPages: 4 });
    expect(wasm.validate(bytes)).toBe(true);
    const memory = new wasm.Memory({ initial: 1, maximum: 4 });
    const { exports } = new wasm.Instance(new wasm.Module(bytes), { env: { memory } });
    const rescale = exports.rescale as (x: number, y: number, n: number, a: number) => void;

    const rng = testRng();
    const n = 4 * (1 + rng.int(200));
    const a = Math.fround(rng.uniforms(1, 0.5, 4)[0]!);
    const x = Float32Array.from(rng.normals(n));
    const y = Float32Array.from(rng.normals(n));
    const xOffset = 0;
    const yOffset = 4 * n;
    new Float32Array(memory.buffer, xOffset, n).set(x);
    new Float32Array(memory.buffer, yOffset, n).set(y);
    rescale(xOffset, yOffset, n, a);
    const expected = Array.from(x, (xi, k) => (xi * a - y[k]!) / Math.sqrt(a));
    expectClose(new Float32Array(memory.buffer, yOffset, n), expected, { rtol: 1e-5, atol: 1e-6, label: `seed ${rng.seed}` });
    // The function only writes y: x is untouched.
    expect(new Float32Array(memory.buffer, xOffset, n)).toEqual(x);
  });

  it('rowLoop walks a row two vectors at a time, the same code as the loop it stands for', () => {
    // axpy(x, y, nBytes, a): y += a x over one row.
    const build = (useRowLoop: boolean): FunctionBuilder => {
      const [x, y, nBytes, a] = [0, 1, 2, 3];
      const f = new FunctionBuilder([I32, I32, I32, F32]);
      const j = f.local(I32);
      const av = f.local(V128);
      f.get(a).f32x4Splat().set(av);
      const body = (offset: 0 | 16) => {
        f.get(y).get(j).add();
        f.get(y).get(j).add().v128Load(offset);
        f.get(av).get(x).get(j).add().v128Load(offset).f32x4Mul().f32x4Add();
        f.v128Store(offset);
      };
      if (useRowLoop) rowLoop(f, j, nBytes, body);
      else f.forLoop(j, nBytes, 32, () => [0, 16].forEach((offset) => body(offset as 0 | 16)));
      return f;
    };
    expect(build(true).encode()).toEqual(build(false).encode());
    const bytes = emitModule([{ name: 'axpy', builder: build(true) }], { kind: 'exported', initialPages: 1 });
    const { exports } = new wasm.Instance(new wasm.Module(bytes));
    const memory = exports.memory as WasmMemory;
    const rng = testRng();
    const n = 8 * (1 + rng.int(100));
    const x = Float32Array.from(rng.normals(n));
    const y = Float32Array.from(rng.normals(n));
    new Float32Array(memory.buffer, 0, n).set(x);
    new Float32Array(memory.buffer, 4 * n, n).set(y);
    (exports.axpy as (x: number, y: number, nBytes: number, a: number) => void)(0, 4 * n, 4 * n, 0.5);
    expect(new Float32Array(memory.buffer, 4 * n, n)).toEqual(Float32Array.from(y, (v, k) => v + Math.fround(0.5 * x[k]!)));
  });

  it('Op and i32Store: a branchy integer kernel (clamp to [lo, hi) and convert) gives the JS results', () => {
    // clampConvert(src, dst, n, lo, hi): dst_i32[i] = min(max(src[i], lo), hi - 1); dst_f32[n + i] = float(src[i] - lo).
    const [src, dst, n, lo, hi] = [0, 1, 2, 3, 4];
    const f = new FunctionBuilder(5);
    const i = f.local(I32);
    const v = f.local(I32);
    f.forLoop(i, n, 1, () => {
      f.get(src).get(i).i32(2).shl().add().i32Load().set(v);
      f.get(v).get(lo).op(Op.i32LtS).op(Op.if, Op.void).get(lo).set(v).op(Op.else);
      f.get(v).get(hi).op(Op.i32LtS).op(Op.i32Eqz).op(Op.if, Op.void).get(hi).i32(1).op(Op.i32Sub).set(v).op(Op.end);
      f.op(Op.end);
      f.get(dst).get(i).i32(2).shl().add().get(v).i32Store();
      f.get(dst).get(n).get(i).add().i32(2).shl().add();
      f.get(src).get(i).i32(2).shl().add().i32Load().get(lo).op(Op.i32Sub).op(Op.f32ConvertI32S).f32Store();
    });
    const bytes = emitModule([{ name: 'clampConvert', builder: f }], { kind: 'exported', initialPages: 1 });
    const { exports } = new wasm.Instance(new wasm.Module(bytes));
    const memory = exports.memory as WasmMemory;
    const rng = testRng();
    const count = 1 + rng.int(500);
    const values = Int32Array.from({ length: count }, () => rng.int(2001) - 1000);
    new Int32Array(memory.buffer, 0, count).set(values);
    const [low, high] = [-300 + rng.int(100), 300 + rng.int(100)];
    (exports.clampConvert as (...a: number[]) => void)(0, 4 * count, count, low, high);
    expect(Array.from(new Int32Array(memory.buffer, 4 * count, count))).toEqual(Array.from(values, (x) => Math.min(Math.max(x, low), high - 1)));
    expect(Array.from(new Float32Array(memory.buffer, 8 * count, count))).toEqual(Array.from(values, (x) => x - low));
  });

  it('a count of parameters means that many i32 parameters', () => {
    expect(new FunctionBuilder(3).params).toEqual([I32, I32, I32]);
    expect(new FunctionBuilder(3).local(F32)).toBe(3);
  });
});
