// The element-wise part of PEER's expert mixture over [T, R] tensors:
//   forward   z = sigma(a), w = g * z
//   backward  da = g * s * sigma'(a), dg = z * s
// each element in float64 as `activateArray` / `activationDerivativeArray` compute it, rounded to
// float32. On the wasm engine a kernel runs it in place on the heap, split over the kernel pool
// (wasm/gated-activation-kernels.ts, gelu and relu); elsewhere, and for gelu-tanh, JS loops over the
// values do it, with the same bits. Those loops read their operands synchronously: only the host
// tables' mixture calls this (layer's expert-mixture.ts); device tables on webgpu run the mixture as
// tfjs ops (device-expert-mixture.ts).
// Axes: T tokens, R retrieved experts per token.
import * as tf from '@tensorflow/tfjs-core';
import { activateArray, activationDerivativeArray, type Activation } from './activation.js';
import { engineHeap, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { runPass } from '../wasm-memory/pooled-pass.js';
import { GATED_ACTIVATION_MODULE, hasGatedActivationKernel } from '../wasm/gated-activation-kernels.js';

/** Elements per thread from which a pass is split over the kernel pool (backend README, "Gated activations"). */
export const POOLED_GATED_ACTIVATION_MIN_SIZE = 4096;

let hostRoute = false;

/** Test hook: `true` takes the JS loops on wasm too (the route of the other engines). */
export function useHostGatedActivation(host: boolean): void {
  hostRoute = host;
}

export interface GatedActivation {
  /** sigma(a) [T, R] */
  z: tf.Tensor2D;
  /** g * sigma(a) [T, R] */
  w: tf.Tensor2D;
}

export interface GatedActivationGrad {
  /** d loss / d a = g * s * sigma'(a) [T, R] */
  da: tf.Tensor2D;
  /** d loss / d g = sigma(a) * s [T, R] */
  dg: tf.Tensor2D;
}

function checkOperands(what: string, operands: Record<string, tf.Tensor>): [number, number] {
  const entries = Object.entries(operands);
  const [firstName, first] = entries[0]!;
  if (first.rank !== 2) throw new Error(`${what}: ${firstName} must be [T, R], got shape [${first.shape}]`);
  for (const [name, t] of entries) {
    if (t.dtype !== 'float32') throw new Error(`${what}: ${name} must be float32, got ${t.dtype}`);
    if (t.rank !== 2 || t.shape[0] !== first.shape[0] || t.shape[1] !== first.shape[1]) {
      throw new Error(`${what}: ${name} has shape [${t.shape}], ${firstName} has [${first.shape}]`);
    }
  }
  return first.shape as [number, number];
}

/** The heap kernels' module functions, if `activation` runs on the heap here. */
function heapKernels(activation: Activation): ReturnType<typeof engineHeap> {
  if (hostRoute || !hasGatedActivationKernel(activation)) return undefined;
  const heap = engineHeap();
  if (!heap || !kernelsOnHeap(heap.memory, GATED_ACTIVATION_MODULE.key, GATED_ACTIVATION_MODULE.functions)) return undefined;
  return heap;
}

/** z = sigma(a) and w = g * z, for a, g [T, R] (PEER's expert activations and router weights). */
export function gatedActivation(a: tf.Tensor2D, g: tf.Tensor2D, activation: Activation): GatedActivation {
  const shape = checkOperands('gatedActivation', { a, g });
  const size = a.size;
  const heap = heapKernels(activation);
  if (heap) {
    const z = heap.output(shape, 'float32') as tf.Tensor2D;
    const w = heap.output(shape, 'float32') as tf.Tensor2D;
    // Offsets only after the allocations (either may grow the heap).
    const at = [a, g, z, w].map((t) => heap.offsetOf(t));
    runPass(heap.memory, GATED_ACTIVATION_MODULE, `${activation}_forward`, size, POOLED_GATED_ACTIVATION_MIN_SIZE, (start, end) => [...at, start, end]);
    return { z, w };
  }
  const gValues = g.dataSync() as Float32Array;
  const z = new Float32Array(size);
  activateArray(a.dataSync() as Float32Array, activation, z);
  const w = new Float32Array(size);
  for (let i = 0; i < size; i++) w[i] = gValues[i]! * z[i]!;
  return { z: tf.tensor2d(z, shape), w: tf.tensor2d(w, shape) };
}

/**
 * The backward pass of `gatedActivation` for the output gradient s = d loss / d w [T, R], given a,
 * g and the forward's z.
 */
export function gatedActivationGrad(a: tf.Tensor2D, g: tf.Tensor2D, z: tf.Tensor2D, s: tf.Tensor2D, activation: Activation): GatedActivationGrad {
  const shape = checkOperands('gatedActivationGrad', { a, g, z, s });
  const size = a.size;
  const heap = heapKernels(activation);
  if (heap) {
    const da = heap.output(shape, 'float32') as tf.Tensor2D;
    const dg = heap.output(shape, 'float32') as tf.Tensor2D;
    const at = [a, g, z, s, da, dg].map((t) => heap.offsetOf(t));
    runPass(heap.memory, GATED_ACTIVATION_MODULE, `${activation}_backward`, size, POOLED_GATED_ACTIVATION_MIN_SIZE, (start, end) => [...at, start, end]);
    return { da, dg };
  }
  const [gValues, zValues, sValues] = [g, z, s].map((t) => t.dataSync() as Float32Array) as [Float32Array, Float32Array, Float32Array];
  const da = new Float32Array(size);
  activationDerivativeArray(a.dataSync() as Float32Array, activation, da);
  const dg = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    dg[i] = zValues[i]! * sValues[i]!;
    da[i] = gValues[i]! * sValues[i]! * da[i]!;
  }
  return { da: tf.tensor2d(da, shape), dg: tf.tensor2d(dg, shape) };
}
