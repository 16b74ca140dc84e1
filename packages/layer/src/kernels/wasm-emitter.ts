// A minimal WebAssembly binary emitter: just enough of the format (functions of i32 parameters,
// one exported memory, structured loops, i32 / f32 / f32x4 SIMD arithmetic) to build the row
// kernels of the expert mixture at load time, with no toolchain and no binary blob in the source.
// Format reference: the WebAssembly core specification, binary format (chapter 5), and the SIMD
// proposal's opcode table (prefix 0xfd).

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

/** Builds one function body; locals are declared up front, parameters are locals 0..n-1. */
export class FunctionBuilder {
  readonly code: number[] = [];
  private readonly localTypes: ValueType[] = [];

  constructor(readonly params: number) {}

  /** Declares a local of `type`; returns its index. */
  local(type: ValueType): number {
    this.localTypes.push(type);
    return this.params + this.localTypes.length - 1;
  }

  get(index: number): this {
    this.code.push(0x20, ...uleb(index));
    return this;
  }
  set(index: number): this {
    this.code.push(0x21, ...uleb(index));
    return this;
  }
  i32(value: number): this {
    this.code.push(0x41, ...sleb(value));
    return this;
  }
  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  simd(opcode: number, ...immediates: number[]): this {
    this.code.push(0xfd, ...uleb(opcode), ...immediates);
    return this;
  }

  // i32 arithmetic
  add(): this {
    return this.op(0x6a);
  }
  mul(): this {
    return this.op(0x6c);
  }
  shl(): this {
    return this.op(0x74);
  }
  geU(): this {
    return this.op(0x4f);
  }
  divU(): this {
    return this.op(0x6e);
  }

  // memory (natural alignment hints: f32 2^2, v128 2^4 would claim too much; 2^2 is always valid)
  i32Load(offset = 0): this {
    return this.op(0x28, 0x02, ...uleb(offset));
  }
  f32Load(offset = 0): this {
    return this.op(0x2a, 0x02, ...uleb(offset));
  }
  f32Store(offset = 0): this {
    return this.op(0x38, 0x02, ...uleb(offset));
  }
  f32Add(): this {
    return this.op(0x92);
  }
  v128Load(offset = 0): this {
    return this.simd(0x00, 0x02, ...uleb(offset));
  }
  v128Store(offset = 0): this {
    return this.simd(0x0b, 0x02, ...uleb(offset));
  }
  v128Zero(): this {
    return this.simd(0x0c, ...new Array<number>(16).fill(0));
  }
  f32x4Splat(): this {
    return this.simd(0x13);
  }
  f32x4ExtractLane(lane: number): this {
    return this.simd(0x1f, lane);
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

  /** local[index] += step (i32). */
  increment(index: number, step: number | (() => void)): this {
    this.get(index);
    if (typeof step === 'number') this.i32(step);
    else step();
    return this.add().set(index);
  }

  /**
   * `for (counter = 0; counter < limit; counter += step) body()`, counters and limits i32 locals.
   * `limit` is a local index; `step` a constant.
   */
  forLoop(counter: number, limit: number, step: number, body: () => void): this {
    this.i32(0).set(counter);
    return this.whileBelow(counter, limit, step, body);
  }

  /** `for (; counter < limit; counter += step) body()`: like forLoop, without resetting the counter. */
  whileBelow(counter: number, limit: number, step: number, body: () => void): this {
    this.op(0x02, 0x40); // block
    this.op(0x03, 0x40); // loop
    this.get(counter).get(limit).geU().op(0x0d, 1); // br_if 1 (leave the block)
    body();
    this.increment(counter, step);
    this.op(0x0c, 0); // br 0 (next iteration)
    this.op(0x0b, 0x0b); // end loop, end block
    return this;
  }

  /** The encoded body (locals and code). */
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

export interface ExportedFunction {
  name: string;
  builder: FunctionBuilder;
}

/** A module with one exported memory ("memory", `initialPages` of 64 KiB) and the given functions (i32 params, no results). */
export function emitModule(functions: ExportedFunction[], initialPages = 1): Uint8Array {
  // One function type per distinct parameter count.
  const arities = [...new Set(functions.map((f) => f.builder.params))];
  const types = section(1, vec(arities.map((n) => [0x60, ...uleb(n), ...new Array<number>(n).fill(I32), 0x00])));
  const funcs = section(3, vec(functions.map((f) => uleb(arities.indexOf(f.builder.params)))));
  const memory = section(5, vec([[0x00, ...uleb(initialPages)]]));
  const exports = section(
    7,
    vec([[...name('memory'), 0x02, 0x00], ...functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)])]),
  );
  const code = section(10, vec(functions.map((f) => f.builder.encode())));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...funcs, ...memory, ...exports, ...code]);
}
