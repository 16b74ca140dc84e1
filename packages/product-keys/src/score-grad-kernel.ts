// The backward of the gathered scores in one WebAssembly SIMD pass per half, on its own memory.
// Axes: R rows (token, head), k selections per row, dk key width, K table rows (H' * S).
//
// For one half, with id[r, j] the table row of selection j of row r and dy[r, j] its score gradient:
//   dq[r, :]      = sum_j dy[r, j] C[id[r, j], :]
//   dC[id[r, j]] += dy[r, j] q[r, :]                 (rows no selection names stay 0)
//
// Why: in tfjs ops this is a gather of [R * k, dk] rows, two broadcasting products and two ScatterNd
// per half: about 68 ms per 512-token step of the PEER benchmark (R = 4096, k = 16, dk = 128), a
// quarter of the step. A plain JS loop takes about 75 ms; this kernel, with the copies in and out,
// a few ms. It needs wasm SIMD and dk a multiple of 8; the caller falls back to tfjs ops otherwise.
import { emitModule, FunctionBuilder, I32, V128 } from '@peer/backend';

const PAGE = 65536;

// The WebAssembly JS API, typed here: the project compiles against ES2022 + Node types only.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

interface ScoreGradExports {
  memory: WasmMemory;
  /** One half: pointers are byte offsets; q and dq rows are `stride` bytes apart. */
  score_grad(rows: number, k: number, q: number, dq: number, stride: number, c: number, dc: number, ids: number, dy: number, dkBytes: number): void;
}

function buildScoreGrad(): FunctionBuilder {
  const [rows, k, q, dq, stride, c, dc, ids, dy, dkBytes] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const f = new FunctionBuilder(10);
  const r = f.local(I32);
  const j = f.local(I32);
  const i = f.local(I32);
  const keyRow = f.local(I32);
  const gradRow = f.local(I32);
  const w = f.local(V128);
  f.forLoop(r, rows, 1, () => {
    f.forLoop(j, k, 1, () => {
      f.get(dy).f32Load().f32x4Splat().set(w);
      f.get(ids).i32Load().get(dkBytes).mul().set(keyRow);
      f.get(dc).get(keyRow).add().set(gradRow);
      f.get(c).get(keyRow).add().set(keyRow);
      f.increment(dy, 4).increment(ids, 4);
      f.forLoop(i, dkBytes, 32, () => {
        for (const offset of [0, 16]) {
          // dq[r] += w * C[id]
          f.get(dq).get(i).add();
          f.get(dq).get(i).add().v128Load(offset);
          f.get(w).get(keyRow).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
          f.v128Store(offset);
          // dC[id] += w * q[r]
          f.get(gradRow).get(i).add();
          f.get(gradRow).get(i).add().v128Load(offset);
          f.get(w).get(q).get(i).add().v128Load(offset).f32x4Mul().f32x4Add();
          f.v128Store(offset);
        }
      });
    });
    f.increment(q, () => f.get(stride)).increment(dq, () => f.get(stride));
  });
  return f;
}

let kernel: ScoreGradExports | null | undefined;

/** The kernel instance (one per process, its memory reused), or null without wasm SIMD. */
function scoreGradKernel(): ScoreGradExports | null {
  if (kernel !== undefined) return kernel;
  try {
    if (!wasmApi) throw new Error('no WebAssembly');
    const module = new wasmApi.Module(emitModule([{ name: 'score_grad', builder: buildScoreGrad() }], { kind: 'exported', initialPages: 1 }));
    kernel = new wasmApi.Instance(module).exports as ScoreGradExports;
  } catch {
    kernel = null;
  }
  return kernel;
}

let disabled = false;

/** Tests only: route the backward through tfjs ops even where the kernel fits. */
export function disableScoreGradKernel(value: boolean): void {
  disabled = value;
}

/** Whether `scoreGradientsSimd` can run keys of width `dimKey` here. */
export function scoreGradKernelFits(dimKey: number): boolean {
  return !disabled && dimKey % 8 === 0 && scoreGradKernel() !== null;
}

export interface ScoreGradInputs {
  /** Queries [R, 2 * dk]: the first dk features meet table 1, the last dk table 2. */
  queries: Float32Array;
  /** The two sub-key tables [K, dk]. */
  tables: [Float32Array, Float32Array];
  /** Table rows of the selections, [R * k] per half (head offsets included). */
  ids: [Int32Array, Int32Array];
  /** Score gradients [R * k]. */
  dy: Float32Array;
  rows: number;
  k: number;
  dimKey: number;
}

/**
 * The query gradient [R, 2 * dk] and both table gradients [K, dk], as views of the kernel's memory
 * (valid until the next call: copy or hand them to a backend that copies). The inputs are copied in
 * first, so they may be views of the tfjs heap.
 */
export function scoreGradientsSimd(x: ScoreGradInputs): { dq: Float32Array; dTables: [Float32Array, Float32Array] } {
  const kern = scoreGradKernel();
  if (!kern) throw new Error('scoreGradientsSimd: WebAssembly SIMD is not available');
  const { rows, k, dimKey } = x;
  const tableFloats = x.tables[0].length;
  const qFloats = rows * 2 * dimKey;
  const picks = rows * k;
  // Layout (floats): q | dq | C1 | C2 | dC1 | dC2 | ids1 | ids2 | dy
  const at: number[] = [];
  let top = 0;
  for (const floats of [qFloats, qFloats, tableFloats, tableFloats, tableFloats, tableFloats, picks, picks, picks]) {
    at.push(top);
    top += Math.ceil(floats / 4) * 4;
  }
  const bytes = top * 4;
  const have = kern.memory.buffer.byteLength;
  if (bytes > have) kern.memory.grow(Math.ceil((bytes - have) / PAGE));
  const buffer = kern.memory.buffer;
  const floats = (slot: number, length: number) => new Float32Array(buffer, at[slot]! * 4, length);
  floats(0, qFloats).set(x.queries);
  const dq = floats(1, qFloats);
  dq.fill(0);
  floats(2, tableFloats).set(x.tables[0]);
  floats(3, tableFloats).set(x.tables[1]);
  const d1 = floats(4, tableFloats);
  const d2 = floats(5, tableFloats);
  d1.fill(0);
  d2.fill(0);
  new Int32Array(buffer, at[6]! * 4, picks).set(x.ids[0]);
  new Int32Array(buffer, at[7]! * 4, picks).set(x.ids[1]);
  floats(8, picks).set(x.dy);
  const dkBytes = dimKey * 4;
  for (const half of [0, 1]) {
    kern.score_grad(rows, k, at[0]! * 4 + half * dkBytes, at[1]! * 4 + half * dkBytes, 2 * dkBytes, at[2 + half]! * 4, at[4 + half]! * 4, at[6 + half]! * 4, at[8]! * 4, dkBytes);
  }
  return { dq, dTables: [d1, d2] };
}
