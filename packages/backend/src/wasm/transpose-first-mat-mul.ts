// Transpose-first, per-batch matMuls for wasm. The built-in kernels run a transposed operand an
// order of magnitude or more below the plain product's speed (README, Benchmarks), and every matMul
// gradient uses transposed products. Copying the operand into its transposed
// layout costs one pass over memory and lets the fast path run. Products with more than one batch
// then run as one 2-D product per batch (per-batch-mat-mul.ts): the built-in kernel's batched loop
// is far slower.
// The built-in _FusedMatMul also adds the bias wrongly when the output has more than one batch
// (only the first row of each batch gets the right bias) or the bias is not a vector of length P
// (a [1] bias reads past its end; a rank-2 bias throws); such calls add bias and activation with
// separate kernels instead.
// Every call that hands b to the built-in kernel by its own tensor id first evicts an XNNPACK
// operator cached on that id under another shape (mat-mul-operator-cache.ts); the per-batch path
// hands the C side fresh views, which it forgets after each product. Small products (single-batch
// ones too) run on our single-threaded kernel instead (small-mat-mul.ts), with the same bits.
// Axes: Bt output batches (flattened), M rows of the output, P columns, K the contracted axis.
import * as tf from '@tensorflow/tfjs-core';
import type { BatchMatMulAttrs, KernelFunc, TensorInfo, _FusedMatMulAttrs } from '@tensorflow/tfjs-core';
import { transposeLastTwo } from './blocked-transpose.js';
import { evictStaleMatMulOperator } from './mat-mul-operator-cache.js';
import { batchShapes, matMulPerBatch, prefersPerBatch } from './per-batch-mat-mul.js';
import { smallMatMulFor } from './small-mat-mul.js';
import { runWasmKernel, type KernelArgs, type WasmBackend, type WasmKernelFix } from './wasm-backend.js';

/** Calls `product` with both operands in plain layout; disposes the transposed copies. */
function withPlainOperands(
  { inputs, backend, attrs }: KernelArgs,
  product: (args: KernelArgs) => TensorInfo,
): TensorInfo {
  const { transposeA, transposeB } = attrs as unknown as BatchMatMulAttrs;
  const a = inputs.a!;
  const b = inputs.b!;
  const aPlain = transposeA ? transposeLastTwo(a, backend) : a;
  let bPlain: TensorInfo | undefined;
  try {
    bPlain = transposeB ? transposeLastTwo(b, backend) : b;
    return product({ inputs: { ...inputs, a: aPlain, b: bPlain }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
  } finally {
    if (aPlain !== a) backend.disposeData(aPlain.dataId);
    if (bPlain !== undefined && bPlain !== b) backend.disposeData(bPlain.dataId);
  }
}

function requireOriginal(kernelName: string, original: KernelFunc | undefined): KernelFunc {
  if (!original) throw new Error(`wasm has no built-in ${kernelName} kernel to delegate to`);
  return original;
}

/** Product shapes as seen after the transposes: op(a) [..., M, K] and op(b) [..., K, P]. */
function plainShapes(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): [number[], number[]] {
  const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!];
  return [transposeA ? swap(a.shape) : a.shape, transposeB ? swap(b.shape) : b.shape];
}

/**
 * Whether a single-batch product (XNNPACK's in the built-in kernel) is small enough for our
 * single-threaded kernel, which the per-batch path runs.
 */
function prefersSmallSingle(aShape: number[], bShape: number[], backend: WasmBackend): boolean {
  if (batchShapes(aShape, bShape).batches !== 1) return false;
  const [m, k] = aShape.slice(-2) as [number, number];
  return smallMatMulFor(backend, m, k, bShape[bShape.length - 1]!) !== undefined;
}

function batchMatMul(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  const builtIn = requireOriginal(tf.BatchMatMul, original);
  // Only ever called with float32 operands in plain layout (transposes already copied).
  const plain = (args: KernelArgs) => {
    evictStaleMatMulOperator(args.inputs.b!, args.backend);
    return builtIn(args) as TensorInfo;
  };
  const perBatch = ({ inputs, backend }: KernelArgs) => matMulPerBatch(inputs.a!, inputs.b!, backend);
  return (args) => {
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    const { a, b } = args.inputs;
    // Non-float inputs go straight to the built-in kernel, which reports them.
    if (a!.dtype !== 'float32' || b!.dtype !== 'float32') return builtIn(args) as TensorInfo;
    const [aPlain, bPlain] = plainShapes(a!, b!, transposeA, transposeB);
    if (aPlain[aPlain.length - 1] !== bPlain[bPlain.length - 2]) {
      throw new Error(
        `matMul: inner dimensions differ: a [${a!.shape}] (transposeA=${transposeA}) and b [${b!.shape}] (transposeB=${transposeB})`,
      );
    }
    if (prefersPerBatch(aPlain, bPlain) || prefersSmallSingle(aPlain, bPlain, args.backend)) return withPlainOperands(args, perBatch);
    if (!transposeA && !transposeB) return plain(args);
    return withPlainOperands(args, plain);
  };
}

/** Applies a fused activation with the engine's own kernel. */
function activate(x: TensorInfo, attrs: _FusedMatMulAttrs, prelu: TensorInfo | undefined, backend: WasmBackend): TensorInfo {
  switch (attrs.activation) {
    case 'linear':
      return x;
    case 'relu':
      return runWasmKernel(tf.Relu, { x }, backend);
    case 'relu6':
      return runWasmKernel(tf.Relu6, { x }, backend);
    case 'elu':
      return runWasmKernel(tf.Elu, { x }, backend);
    case 'sigmoid':
      return runWasmKernel(tf.Sigmoid, { x }, backend);
    case 'leakyrelu':
      return runWasmKernel(tf.LeakyRelu, { x }, backend, { alpha: attrs.leakyreluAlpha ?? 0.2 });
    case 'prelu':
      if (!prelu) throw new Error('_FusedMatMul: prelu activation needs preluActivationWeights');
      return runWasmKernel(tf.Prelu, { x, alpha: prelu }, backend);
    default:
      throw new Error(`_FusedMatMul: unknown activation '${String(attrs.activation)}'`);
  }
}

function fusedMatMul(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  const builtIn = requireOriginal(tf._FusedMatMul, original);
  // Called with plain-layout operands (tfjs-core hands this kernel rank-3 operands [B, ., .]).
  const fused = ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { a, b, bias, preluActivationWeights } = inputs;
    const n = b!.shape[b!.shape.length - 1]!;
    const { batches } = batchShapes(a!.shape, b!.shape);
    // XNNPACK fuses a length-P bias and the activation into a single-batch product.
    const fusable = bias === undefined || bias === null || (bias.shape.length === 1 && bias.shape[0] === n);
    if (batches <= 1 && fusable) {
      evictStaleMatMulOperator(b!, backend);
      return builtIn({ inputs, backend, attrs }) as TensorInfo;
    }
    // The registered BatchMatMul (this package's fix when installed) picks the per-batch path.
    const product = runWasmKernel(tf.BatchMatMul, { a: a!, b: b! }, backend, { transposeA: false, transposeB: false });
    let biased: TensorInfo | undefined;
    try {
      biased = bias ? runWasmKernel(tf.Add, { a: product, b: bias }, backend) : product;
      const out = activate(biased, attrs as unknown as _FusedMatMulAttrs, preluActivationWeights, backend);
      if (out !== biased && biased !== product) backend.disposeData(biased.dataId);
      if (out !== product) backend.disposeData(product.dataId);
      return out;
    } catch (err) {
      if (biased && biased !== product) backend.disposeData(biased.dataId);
      backend.disposeData(product.dataId);
      throw err;
    }
  };
  return (args) => {
    const { transposeA, transposeB } = args.attrs as unknown as _FusedMatMulAttrs;
    const { a, b } = args.inputs;
    if (a!.dtype !== 'float32' || b!.dtype !== 'float32') return builtIn(args) as TensorInfo;
    return transposeA || transposeB ? withPlainOperands(args, fused) : fused(args);
  };
}

export const batchMatMulFix: WasmKernelFix = {
  name: 'BatchMatMul (transpose first, per-batch products)',
  kernelName: tf.BatchMatMul,
  kernelFunc: batchMatMul,
};

export const fusedMatMulFix: WasmKernelFix = {
  name: '_FusedMatMul (transpose first, per-batch products, unfused bias)',
  kernelName: tf._FusedMatMul,
  kernelFunc: fusedMatMul,
};
