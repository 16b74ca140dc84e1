// A minimal WebAssembly binary emitter: functions over i32/f32 parameters, one memory (imported as
// "env"."memory" or exported as "memory"), structured loops, i32 / f32 / f32x4 SIMD arithmetic, and
// i64 / f64 locals and constants for scalar float64 code (other opcodes go through `op`).
// Enough to build SIMD kernels at load time, with no toolchain and no binary blob in the source.
// Format reference: the WebAssembly core specification, binary format (chapter 5), and the SIMD
// proposal's opcode table (prefix 0xfd).

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export const I64 = 0x7e;
export const F64 = 0x7c;
export type ValueType = typeof I32 | typeof F32 | typeof V128 | typeof I64 | typeof F64;

/**
 * Opcodes the builder has no helper for, by their names in the core specification (binary format;
 * SIMD opcodes go through `simd`), for kernels to pass to `op`. Kernels written before this table
 * keep their own constants.
 */
export const Op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  /** The empty block type (a block, loop or if that leaves nothing on the stack). */
  void: 0x40,
  i32Eqz: 0x45,
  i32Ne: 0x47,
  i32LtS: 0x48,
  i32Sub: 0x6b,
  i32And: 0x71,
  i32Xor: 0x73,
  i32ShrU: 0x76,
  f32Lt: 0x5d,
  f32Gt: 0x5e,
  f32Ge: 0x60,
  f32ConvertI32S: 0xb2,
} as const;

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

/** A loop step: a constant, or code that pushes the i32 step onto the stack. */
export type LoopStep = number | (() => void);

/**
 * Builds one function body. Parameters are locals 0..n-1 (`params` lists their types, or is a
 * count of i32 parameters); further locals are declared with `local`.
 */
export class FunctionBuilder {
  readonly code: number[] = [];
  readonly params: readonly ValueType[];
  private readonly localTypes: ValueType[] = [];

  constructor(params: readonly ValueType[] | number) {
    this.params = typeof params === 'number' ? new Array<ValueType>(params).fill(I32) : [...params];
  }

  /** Declares a local of `type`; returns its index. */
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
  /** f64.const: the exact bits of the JS number `value`. */
  f64(value: number): this {
    const bytes = new DataView(new ArrayBuffer(8));
    bytes.setFloat64(0, value, true);
    return this.op(0x44, ...new Uint8Array(bytes.buffer));
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
  ltU(): this {
    return this.op(0x49);
  }
  geU(): this {
    return this.op(0x4f);
  }
  divU(): this {
    return this.op(0x6e);
  }

  // memory. Alignment hint 2^2: always valid for float32 data (a v128 hint of 2^4 would promise more).
  i32Load(offset = 0): this {
    return this.op(0x28, 0x02, ...uleb(offset));
  }
  i32Store(offset = 0): this {
    return this.op(0x36, 0x02, ...uleb(offset));
  }
  f32Load(offset = 0): this {
    return this.op(0x2a, 0x02, ...uleb(offset));
  }
  f32Store(offset = 0): this {
    return this.op(0x38, 0x02, ...uleb(offset));
  }
  v128Load(offset = 0): this {
    return this.simd(0x00, 0x02, ...uleb(offset));
  }
  v128Store(offset = 0): this {
    return this.simd(0x0b, 0x02, ...uleb(offset));
  }

  // f32 and f32x4 arithmetic
  f32Add(): this {
    return this.op(0x92);
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

  /** local[index] += step (i32). */
  increment(index: number, step: LoopStep): this {
    this.get(index);
    if (typeof step === 'number') this.i32(step);
    else step();
    return this.add().set(index);
  }

  /** `for (counter = 0; counter < limit; counter += step) body()`; counter and limit are i32 locals. */
  forLoop(counter: number, limit: number, step: LoopStep, body: () => void): this {
    this.i32(0).set(counter);
    return this.whileBelow(counter, limit, step, body);
  }

  /** `for (; counter < limit; counter += step) body()`: like forLoop, without resetting the counter. */
  whileBelow(counter: number, limit: number, step: LoopStep, body: () => void): this {
    this.op(0x02, 0x40); // block
    this.op(0x03, 0x40); // loop
    this.get(counter).get(limit).geU().op(0x0d, 1); // br_if 1 (leave the block; unsigned compare)
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

/**
 * An f32x4 loop over one row of float32s, unrolled twice: `for (j = 0; j < rowBytes; j += 32)` runs
 * `body(0)` then `body(16)`, the byte offsets of the two vectors at j (a v128 load/store immediate).
 * `j` and `rowBytes` are i32 locals; rows must be a multiple of 8 floats wide.
 */
export function rowLoop(f: FunctionBuilder, j: number, rowBytes: number, body: (offset: 0 | 16) => void): void {
  f.forLoop(j, rowBytes, 32, () => {
    body(0);
    body(16);
  });
}

export interface ExportedFunction {
  name: string;
  builder: FunctionBuilder;
}

/**
 * The module's one linear memory (pages of 64 KiB): imported from the host as `env.memory` (the
 * caller owns and may share it; at most `maxPages`), or created by the module and exported as
 * `memory` (starting at `initialPages`, growable). An imported memory that is `shared` (a
 * SharedArrayBuffer, as the threaded wasm engine's heap and worker-pool arenas are) must be declared so.
 */
export type ModuleMemory = { kind: 'imported'; maxPages: number; shared?: boolean } | { kind: 'exported'; initialPages: number };

/** A module with one memory (see ModuleMemory) exporting `functions` (no results). */
export function emitModule(functions: readonly ExportedFunction[], memory: ModuleMemory): Uint8Array {
  // One function type per distinct parameter list.
  const signatures = [...new Set(functions.map((f) => f.builder.params.join(',')))];
  const types = section(
    1,
    vec(
      signatures.map((s) => {
        const params = s === '' ? [] : s.split(',').map(Number);
        return [0x60, ...uleb(params.length), ...params, 0x00];
      }),
    ),
  );
  const funcs = section(3, vec(functions.map((f) => uleb(signatures.indexOf(f.builder.params.join(','))))));
  const functionExports = functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]);
  const code = section(10, vec(functions.map((f) => f.builder.encode())));
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  if (memory.kind === 'imported') {
    // Limits flags: 0x01 minimum and maximum, 0x03 the same for a shared memory.
    const limits = memory.shared ? 0x03 : 0x01;
    const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, limits, ...uleb(0), ...uleb(memory.maxPages)]]));
    const exports = section(7, vec(functionExports));
    return Uint8Array.from([...header, ...types, ...imports, ...funcs, ...exports, ...code]);
  }
  const memories = section(5, vec([[0x00, ...uleb(memory.initialPages)]]));
  const exports = section(7, vec([[...name('memory'), 0x02, 0x00], ...functionExports]));
  return Uint8Array.from([...header, ...types, ...funcs, ...memories, ...exports, ...code]);
}
