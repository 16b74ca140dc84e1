// One AdamW step (decoupled weight decay, Loshchilov & Hutter; torch.optim.AdamW's update) of a
// dense variable and its two moments. On wasm it is one fused SIMD pass on the engine's heap, split
// over the kernel pool (wasm/fused-adamw.ts), with the same bits as the tfjs-op composition below,
// which every other engine runs.
//
// Per variable p with gradient g, step t (1-based):
//   p <- p * (1 - lr * wd)                      (only where decay applies)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
import * as tf from '@tensorflow/tfjs-core';
import { engineHeap, kernelsOnHeap } from '../wasm-memory/engine-heap.js';
import { ADAMW_MODULE, runFusedAdamw, type AdamwConstants } from '../wasm/fused-adamw.js';

export interface AdamwStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay; 0 for none (norm gains, biases). */
  weightDecay: number;
  /** The step number t, from 1 (the bias corrections). */
  step: number;
}

let composedOnly = false;

/** Test hook: `true` runs the tfjs-op composition on wasm too (the route of every other engine). */
export function useComposedAdamw(composed: boolean): void {
  composedOnly = composed;
}

function constants(o: AdamwStepOptions): AdamwConstants {
  return {
    beta1: o.beta1,
    oneMinusBeta1: 1 - o.beta1,
    beta2: o.beta2,
    oneMinusBeta2: 1 - o.beta2,
    decay: o.weightDecay > 0 ? 1 - o.lr * o.weightDecay : undefined,
    bc2Sqrt: Math.sqrt(1 - o.beta2 ** o.step),
    eps: o.eps,
    stepSize: o.lr / (1 - o.beta1 ** o.step),
  };
}

/**
 * Applies one AdamW step to `p` with gradient `g`, updating the moments `m` and `v` (variables of
 * p's shape, zeros before the first step). The caller keeps owning `g`.
 */
export function adamwUpdate(p: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, options: AdamwStepOptions): void {
  for (const [name, t] of [['gradient', g], ['m', m], ['v', v]] as const) {
    if (!tf.util.arraysEqual(t.shape, p.shape)) throw new Error(`adamwUpdate: ${name} has shape [${t.shape}], expected the variable's [${p.shape}] (${p.name})`);
  }
  if (!Number.isInteger(options.step) || options.step < 1) throw new Error(`adamwUpdate: step must be an integer >= 1, got ${options.step}`);
  const c = constants(options);
  const heap = composedOnly ? undefined : engineHeap();
  const fused = heap && [p, g, m, v].every((t) => t.dtype === 'float32') && kernelsOnHeap(heap.memory, ADAMW_MODULE.key, ADAMW_MODULE.functions);
  if (heap && fused) {
    const [pOut, mOut, vOut] = [heap.output(p.shape, 'float32'), heap.output(p.shape, 'float32'), heap.output(p.shape, 'float32')];
    // Offsets only after the allocations (they may grow the heap).
    const at = (t: tf.Tensor) => heap.offsetOf(t);
    runFusedAdamw(heap.memory, { p: at(p), g: at(g), m: at(m), v: at(v), pOut: at(pOut), mOut: at(mOut), vOut: at(vOut) }, p.size, c);
    m.assign(mOut);
    v.assign(vOut);
    p.assign(pOut);
    tf.dispose([pOut, mOut, vOut]);
    return;
  }
  tf.tidy(() => {
    const mNew = tf.add(tf.mul(m, c.beta1), tf.mul(g, c.oneMinusBeta1));
    const vNew = tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), c.oneMinusBeta2));
    m.assign(mNew);
    v.assign(vNew);
    const decayed = c.decay !== undefined ? tf.mul(p, c.decay) : p;
    const denom = tf.add(tf.div(tf.sqrt(vNew), c.bc2Sqrt), c.eps);
    p.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), c.stepSize)));
  });
}
