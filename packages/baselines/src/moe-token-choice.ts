// Mixture of experts with token-choice routing (Switch K = 1, GShard K = 2).
//
// Axes: B batch, S sequence, T = B*S tokens, D model width, E experts, H expert hidden width,
// K experts per token, C capacity (tokens per expert).
//
//   p_t = softmax(x_t Wr)                               router probabilities, [T, E]
//   top-K experts per token; g_te = p_te (K = 1) or p_te / sum_{e' in top-K(t)} p_te' (K >= 2, normalizeGates)
//   C = ceil(T * K * capacityFactor / E); first choices in token order fill the experts first, then
//   second choices; an assignment that finds its expert full is dropped (its output is 0: the token
//   keeps only its residual path for that assignment)
//   y_t = sum over kept assignments (t, e) of g_te * FFW_e(x_t)
//   auxLoss = auxLossCoef * E * sum_e f_e P_e  (f_e: share of the T*K assignments that chose e, before
//             capacity; P_e: mean router probability of e)  +  zLossCoef * mean_t logsumexp(x_t Wr)^2
//
// A token's combine weights sum to p_t,top1 for K = 1, to 1 for K >= 2 with normalizeGates when no
// assignment is dropped, and lose exactly the dropped assignments' gates otherwise.
import * as tf from '@tensorflow/tfjs-core';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { parseMoeTokenChoiceConfig, type MoeTokenChoiceConfig, type MoeTokenChoiceOptions } from './moe-config.js';
import { expertMixture, type ExpertParams } from './moe-expert-mixture.js';
import { MoeLayerBase } from './moe-layer-base.js';
import { routerZLoss } from './moe-parameters.js';
import { tokenChoiceCapacity, tokenChoiceRouting, type TokenChoiceRouting } from './moe-routing.js';
import { deviceExpertMixture, deviceTokenChoiceRouting, slotGates } from './moe-device-routing.js';

export interface MoeTensors {
  /** [D, E] */
  router: tf.Tensor2D;
  experts: ExpertParams;
}

export interface MoeTokenChoiceResult {
  /** [T, D] */
  y: tf.Tensor2D;
  auxLoss?: tf.Scalar;
  routing: TokenChoiceRouting;
  /** [T*K] combine weight of each assignment (best first); 0 for a dropped one. */
  combineWeights: Float32Array;
}

/**
 * The layer as a function of explicit tensors (what the class calls with its variables; tests call
 * it with plain tensors). `routing` pins the routing (e.g. for finite differences); by default it is
 * computed from the router probabilities.
 */
export function moeTokenChoiceForward(
  x: tf.Tensor2D,
  params: MoeTensors,
  config: MoeTokenChoiceConfig,
  training: boolean,
  routing?: TokenChoiceRouting,
): MoeTokenChoiceResult {
  const T = x.shape[0];
  const { experts: E, topK: K } = config;
  const logits = tf.matMul(x, params.router) as tf.Tensor2D;
  const probs = tf.softmax(logits) as tf.Tensor2D;
  const probsData = probs.dataSync();
  const capacity = tokenChoiceCapacity(T, E, K, training ? config.capacityFactor : config.evalCapacityFactor);
  const route = routing ?? tokenChoiceRouting(probsData, T, E, K, capacity);
  if (route.dispatch.tokens !== T || route.dispatch.experts !== E) {
    throw new Error(`routing is for ${route.dispatch.tokens} tokens and ${route.dispatch.experts} experts, the input has ${T} tokens and the layer ${E}`);
  }
  const normalize = K > 1 && config.normalizeGates;

  let gates: tf.Tensor2D = probs;
  const mask = new Float32Array(T * E);
  for (let i = 0; i < route.choices.length; i++) mask[Math.floor(i / K) * E + route.choices[i]!] = 1;
  if (normalize) {
    const chosen = tf.mul(probs, tf.tensor2d(mask, [T, E]));
    gates = tf.div(chosen, tf.sum(chosen, 1, true)) as tf.Tensor2D;
  }

  const combineWeights = new Float32Array(T * K);
  const slots = route.dispatch.experts * route.dispatch.capacity;
  for (let t = 0; t < T; t++) {
    let denominator = 1;
    if (normalize) {
      denominator = 0;
      for (let j = 0; j < K; j++) denominator += probsData[t * E + route.choices[t * K + j]!]!;
    }
    for (let j = 0; j < K; j++) {
      const e = route.choices[t * K + j]!;
      const kept = route.dispatch.pairSlot[t * E + e]! < slots;
      combineWeights[t * K + j] = kept ? probsData[t * E + e]! / denominator : 0;
    }
  }

  const y = expertMixture(x, gates, params.experts, route.dispatch, config.activation);

  let auxLoss: tf.Scalar | undefined;
  if (training && config.auxLossCoef > 0) {
    const f = tf.tensor1d(Float32Array.from(route.requestedLoad, (n) => n / (T * K)));
    auxLoss = tf.mul(tf.sum(tf.mul(tf.mean(probs, 0), f)), config.auxLossCoef * E) as tf.Scalar;
  }
  if (training && config.zLossCoef > 0) {
    const z = tf.mul(routerZLoss(logits), config.zLossCoef) as tf.Scalar;
    auxLoss = auxLoss ? (tf.add(auxLoss, z) as tf.Scalar) : z;
  }
  return { y, ...(auxLoss ? { auxLoss } : {}), routing: route, combineWeights };
}

/** What the device forward passes give: no host-side routing (reading it would need a synchronous read). */
export interface MoeDeviceResult {
  /** [T, D] */
  y: tf.Tensor2D;
  auxLoss?: tf.Scalar;
}

/**
 * `moeTokenChoiceForward` for device engines (webgpu): the same routing, gates, output and aux loss
 * with tfjs ops only (moe-device-routing.ts), no synchronous read.
 */
export function moeTokenChoiceDeviceForward(x: tf.Tensor2D, params: MoeTensors, config: MoeTokenChoiceConfig, training: boolean): MoeDeviceResult {
  const T = x.shape[0];
  const { experts: E, topK: K } = config;
  const logits = tf.matMul(x, params.router) as tf.Tensor2D;
  const probs = tf.softmax(logits) as tf.Tensor2D;
  const capacity = tokenChoiceCapacity(T, E, K, training ? config.capacityFactor : config.evalCapacityFactor);
  const route = deviceTokenChoiceRouting(probs, K, capacity);
  let gates: tf.Tensor2D = probs;
  if (K > 1 && config.normalizeGates) {
    const chosen = tf.mul(probs, tf.sum(tf.oneHot(route.choices, E, 1, 0, 'float32'), 1));
    gates = tf.div(chosen, tf.sum(chosen, 1, true)) as tf.Tensor2D;
  }
  const y = deviceExpertMixture(x, slotGates(gates, route), route, params.experts, capacity, config.activation);
  let auxLoss: tf.Scalar | undefined;
  if (training && config.auxLossCoef > 0) {
    const f = tf.div(route.requestedLoad, T * K);
    auxLoss = tf.mul(tf.sum(tf.mul(tf.mean(probs, 0), f)), config.auxLossCoef * E) as tf.Scalar;
  }
  if (training && config.zLossCoef > 0) {
    const z = tf.mul(routerZLoss(logits), config.zLossCoef) as tf.Scalar;
    auxLoss = auxLoss ? (tf.add(auxLoss, z) as tf.Scalar) : z;
  }
  return { y, ...(auxLoss ? { auxLoss } : {}) };
}

/** Token-choice MoE layer: the `FeedForwardLayer` of kind 'moe'. */
export class MoeTokenChoice extends MoeLayerBase<MoeTokenChoiceConfig, MoeTokenChoiceResult> implements FeedForwardLayer {
  readonly kind = 'moe' as const;

  constructor(options: MoeTokenChoiceOptions) {
    super(parseMoeTokenChoiceConfig(options));
  }

  /** K (usage counts the combine weights of kept assignments). */
  protected expertsPerToken(): number {
    return this.config.topK;
  }

  protected hostForward(x: tf.Tensor2D, training: boolean): MoeTokenChoiceResult {
    return moeTokenChoiceForward(x, this.tensors(), this.config, training);
  }

  protected deviceForward(x: tf.Tensor2D, training: boolean): MoeDeviceResult {
    return moeTokenChoiceDeviceForward(x, this.tensors(), this.config, training);
  }

  protected record(result: MoeTokenChoiceResult): void {
    const { dispatch, choices, requestedLoad } = result.routing;
    this.last = {
      tokens: dispatch.tokens,
      capacity: dispatch.capacity,
      expertLoad: Int32Array.from(dispatch.expertLoad),
      requestedLoad: Int32Array.from(requestedLoad),
      droppedAssignments: dispatch.droppedAssignments,
      droppedTokens: dispatch.droppedTokens,
    };
    if (this.usage.active) {
      const targets: number[] = [];
      const weights: number[] = [];
      for (let i = 0; i < choices.length; i++) {
        if (result.combineWeights[i]! > 0) {
          targets.push(choices[i]!);
          weights.push(result.combineWeights[i]!);
        }
      }
      this.usage.add(Int32Array.from(targets), Float64Array.from(weights));
    }
  }
}
