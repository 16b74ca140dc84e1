// A minimal WebAssembly binary emitter: functions over i32/f32 parameters, one imported memory
// ("env"."memory"), structured loops, i32/f32/f32x4 arithmetic. Enough to build the optimizer
// kernels at load time, with no toolchain and no binary blob in the source.
// Format: the WebAssembly core specification, binary format, and the SIMD opcode table (0xfd prefix).

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValueType = typeof I32 | typeof F32 | typeof V128;

function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function name(text: string): number[] {
  const bytes = [...new TextEncoder().encode(text)];
  return [...uleb(bytes.length), ...bytes];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** One function body. Parameters are locals 0..n-1; further locals are declared with `local`. */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly localTypes: ValueType[] = [];

  constructor(readonly params: readonly ValueType[]) {}

  local(type: ValueType): number {
    this.localTypes.push(type);
    return this.params.length + this.localTypes.length - 1;
  }

  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  simd(opcode: number, ...immediates: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...immediates);
  }
  get(index: number): this {
    return this.op(0x20, ...uleb(index));
  }
  set(index: number): this {
    return this.op(0x21, ...uleb(index));
  }
  i32(value: number): this {
    return this.op(0x41, ...sleb(value));
  }
  add(): this {
    return this.op(0x6a);
  }
  mul(): this {
    return this.op(0x6c);
  }
  ltU(): this {
    return this.op(0x49);
  }
  i32Load(offset = 0): this {
    return this.op(0x28, 0x02, ...uleb(offset));
  }
  f32Load(offset = 0): this {
    return this.op(0x2a, 0x02, ...uleb(offset));
  }
  // Alignment hint 2^2: always valid for float32 data (a v128 hint of 2^4 would promise more).
  v128Load(offset = 0): this {
    return this.simd(0x00, 0x02, ...uleb(offset));
  }
  v128Store(offset = 0): this {
    return this.simd(0x0b, 0x02, ...uleb(offset));
  }
  f32x4Splat(): this {
    return this.simd(0x13);
  }
  f32x4Sqrt(): this {
    return this.simd(0xe3);
  }
  f32x4Add(): this {
    return this.simd(0xe4);
  }
  f32x4Sub(): this {
    return this.simd(0xe5);
  }
  f32x4Mul(): this {
    return this.simd(0xe6);
  }
  f32x4Div(): this {
    return this.simd(0xe7);
  }

  /** local[index] += step. */
  increment(index: number, step: number | (() => void)): this {
    this.get(index);
    if (typeof step === 'number') this.i32(step);
    else step();
    return this.add().set(index);
  }

  /** `for (counter = 0; counter < limit; counter += step) body()`; `limit` is a local index. */
  forLoop(counter: number, limit: number, step: number | (() => void), body: () => void): this {
    this.i32(0).set(counter);
    this.op(0x02, 0x40); // block
    this.op(0x03, 0x40); // loop
    this.get(counter).get(limit).ltU().op(0x45).op(0x0d, 1); // if !(counter < limit) br 1
    body();
    this.increment(counter, step);
    this.op(0x0c, 0); // br 0
    this.op(0x0b, 0x0b); // end loop, end block
    return this;
  }

  encode(): number[] {
    const groups: number[][] = [];
    for (let i = 0; i < this.localTypes.length; ) {
      let j = i;
      while (j < this.localTypes.length && this.localTypes[j] === this.localTypes[i]) j++;
      groups.push([...uleb(j - i), this.localTypes[i]!]);
      i = j;
    }
    const body = [...vec(groups), ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

/** A module importing `env.memory` (up to `maxPages` of 64 KiB) and exporting `functions` (no results). */
export function emitModule(functions: { name: string; builder: FunctionBuilder }[], maxPages: number): Uint8Array {
  const signatures = [...new Set(functions.map((f) => f.builder.params.join(',')))];
  const types = section(
    1,
    vec(signatures.map((s) => {
      const params = s === '' ? [] : s.split(',').map(Number);
      return [0x60, ...uleb(params.length), ...params, 0x00];
    })),
  );
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x01, ...uleb(0), ...uleb(maxPages)]]));
  const funcs = section(3, vec(functions.map((f) => uleb(signatures.indexOf(f.builder.params.join(','))))));
  const exports = section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)])));
  const code = section(10, vec(functions.map((f) => f.builder.encode())));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}
