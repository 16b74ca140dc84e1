// Transpose-first matMuls for wasm. The built-in kernels run a transposed operand far below the
// plain product's speed (engine-notes, 1024^3: transposeB 2 GFLOP/s, transposeA 0.4, none 29),
// and every matMul gradient uses transposed products. Copying the operand into its transposed
// layout costs one pass over memory and lets the fast path run.
// The built-in _FusedMatMul also adds the bias wrongly when the output has more than one batch
// (only the first row of each batch gets the right bias); such calls add bias and activation
// with separate kernels instead.
// B batch (flattened), M rows of the output, N columns, K the contracted axis.
import * as tf from '@tensorflow/tfjs-core';
import type { BatchMatMulAttrs, KernelFunc, TensorInfo, _FusedMatMulAttrs } from '@tensorflow/tfjs-core';
import { transposeLastTwo } from './blocked-transpose.js';
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

function batchMatMul(original: KernelFunc | undefined): (args: KernelArgs) => TensorInfo {
  const builtIn = requireOriginal(tf.BatchMatMul, original);
  const plain = (args: KernelArgs) => builtIn(args) as TensorInfo;
  return (args) => {
    const { transposeA, transposeB } = args.attrs as unknown as BatchMatMulAttrs;
    const { a, b } = args.inputs;
    // Non-float inputs go straight to the built-in kernel, which reports them.
    if ((!transposeA && !transposeB) || a!.dtype !== 'float32' || b!.dtype !== 'float32') return plain(args);
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
  const fused = ({ inputs, backend, attrs }: KernelArgs): TensorInfo => {
    const { a, b, bias, preluActivationWeights } = inputs;
    // tfjs-core hands this kernel rank-3 operands [B, ., .].
    const outBatch = Math.max(a!.shape[0] ?? 1, b!.shape[0] ?? 1);
    if (bias === undefined || bias === null || outBatch <= 1) return builtIn({ inputs, backend, attrs }) as TensorInfo;
    const product = builtIn({ inputs: { a: a!, b: b! }, backend, attrs: { ...attrs, activation: 'linear' } }) as TensorInfo;
    let biased: TensorInfo | undefined;
    try {
      biased = runWasmKernel(tf.Add, { a: product, b: bias }, backend);
      const out = activate(biased, attrs as unknown as _FusedMatMulAttrs, preluActivationWeights, backend);
      if (out !== biased) backend.disposeData(biased.dataId);
      return out;
    } catch (err) {
      if (biased) backend.disposeData(biased.dataId);
      throw err;
    } finally {
      backend.disposeData(product.dataId);
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
  name: 'BatchMatMul (transpose first)',
  kernelName: tf.BatchMatMul,
  kernelFunc: batchMatMul,
};

export const fusedMatMulFix: WasmKernelFix = {
  name: '_FusedMatMul (transpose first, batched bias)',
  kernelName: tf._FusedMatMul,
  kernelFunc: fusedMatMul,
};
