// Mixture of experts with expert-choice routing (Zhou et al. 2022), the PEER paper's MoE baseline.
//
// Axes: B batch, S sequence, T = B*S tokens, D model width, E experts, H expert hidden width,
// C tokens per expert.
//
//   p_t = softmax(x_t Wr)                  router probabilities over experts, per token, [T, E]
//   C = ceil(T * capacityFactor / E)       every expert takes exactly C tokens of the batch:
//   expert e processes the C tokens with the largest p_te
//   y_t = sum over experts e that picked t of p_te * FFW_e(x_t)
//   auxLoss = zLossCoef * mean_t logsumexp(x_t Wr)^2 (optional; expert choice is balanced by construction)
//
// A token's combine weights are the probabilities of the experts that picked it: their sum lies in
// [0, 1]; a token picked by no expert gets 0 from the layer (only its residual path), and one token
// may be picked by up to E experts.
//
// Causal-LM caveat: the selection looks at the whole batch. A token's output depends on the other
// tokens of the batch, later positions of its own sequence included (whether it wins a slot depends
// on how it ranks against them). Training sees this leak, and the output of a token is not a function
// of its prefix: evaluate on batches of the same composition (size and length) as in training;
// autoregressive generation token by token is not equivalent to the batched forward.
import * as tf from '@tensorflow/tfjs-core';
import type { FeedForwardLayer } from '@peer/feed-forward';
import { parseMoeExpertChoiceConfig, type MoeExpertChoiceConfig, type MoeExpertChoiceOptions } from './moe-config.js';
import { expertMixture } from './moe-expert-mixture.js';
import { MoeLayerBase } from './moe-layer-base.js';
import { routerZLoss } from './moe-parameters.js';
import { expertChoiceCapacity, expertChoiceDispatch, type MoeDispatch } from './moe-routing.js';
import { deviceExpertChoiceSlots, deviceExpertMixture, slotGates } from './moe-device-routing.js';
import type { MoeDeviceResult, MoeTensors } from './moe-token-choice.js';

export interface MoeExpertChoiceResult {
  /** [T, D] */
  y: tf.Tensor2D;
  auxLoss?: tf.Scalar;
  dispatch: MoeDispatch;
  /** [E*C] the gate p_te of each slot. */
  slotGates: Float32Array;
}

/**
 * The layer as a function of explicit tensors. `dispatch` pins the selection (e.g. for finite
 * differences); by default each expert takes its top-C tokens (tf.topk over the batch).
 */
export function moeExpertChoiceForward(
  x: tf.Tensor2D,
  params: MoeTensors,
  config: MoeExpertChoiceConfig,
  training: boolean,
  dispatch?: MoeDispatch,
): MoeExpertChoiceResult {
  const T = x.shape[0];
  const E = config.experts;
  const logits = tf.matMul(x, params.router) as tf.Tensor2D;
  const probs = tf.softmax(logits) as tf.Tensor2D;
  let route = dispatch;
  if (!route) {
    const capacity = expertChoiceCapacity(T, E, training ? config.capacityFactor : config.evalCapacityFactor);
    // The selection is discrete: read the indices back and rebuild the dispatch off the tape.
    const topTokens = tf.tidy(() => tf.topk(tf.transpose(probs), capacity).indices.dataSync());
    route = expertChoiceDispatch(topTokens, T, E, capacity);
  } else if (route.tokens !== T || route.experts !== E) {
    throw new Error(`dispatch is for ${route.tokens} tokens and ${route.experts} experts, the input has ${T} tokens and the layer ${E}`);
  }
  const probsData = probs.dataSync();
  const slotGates = new Float32Array(route.slotPair.length);
  for (let s = 0; s < slotGates.length; s++) {
    const pair = route.slotPair[s]!;
    slotGates[s] = pair < T * E ? probsData[pair]! : 0;
  }
  const y = expertMixture(x, probs, params.experts, route, config.activation);
  const auxLoss = training && config.zLossCoef > 0 ? (tf.mul(routerZLoss(logits), config.zLossCoef) as tf.Scalar) : undefined;
  return { y, ...(auxLoss ? { auxLoss } : {}), dispatch: route, slotGates };
}

/**
 * `moeExpertChoiceForward` for device engines (webgpu): the same selection, output and aux loss with
 * tfjs ops only (moe-device-routing.ts), no synchronous read.
 */
export function moeExpertChoiceDeviceForward(x: tf.Tensor2D, params: MoeTensors, config: MoeExpertChoiceConfig, training: boolean): MoeDeviceResult {
  const T = x.shape[0];
  const logits = tf.matMul(x, params.router) as tf.Tensor2D;
  const probs = tf.softmax(logits) as tf.Tensor2D;
  const capacity = expertChoiceCapacity(T, config.experts, training ? config.capacityFactor : config.evalCapacityFactor);
  const slots = deviceExpertChoiceSlots(probs, capacity);
  const y = deviceExpertMixture(x, slotGates(probs, slots), slots, params.experts, capacity, config.activation);
  const auxLoss = training && config.zLossCoef > 0 ? (tf.mul(routerZLoss(logits), config.zLossCoef) as tf.Scalar) : undefined;
  return { y, ...(auxLoss ? { auxLoss } : {}) };
}

/** Expert-choice MoE layer: the `FeedForwardLayer` of kind 'moe-ec'. */
export class MoeExpertChoice extends MoeLayerBase<MoeExpertChoiceConfig, MoeExpertChoiceResult> implements FeedForwardLayer {
  readonly kind = 'moe-ec' as const;

  constructor(options: MoeExpertChoiceOptions) {
    super(parseMoeExpertChoiceConfig(options));
  }

  /** capacityFactor: every expert takes E * C slots over T tokens (a token's usage counts the gates of the experts that picked it). */
  protected expertsPerToken(): number {
    return this.config.capacityFactor;
  }

  protected hostForward(x: tf.Tensor2D, training: boolean): MoeExpertChoiceResult {
    return moeExpertChoiceForward(x, this.tensors(), this.config, training);
  }

  protected deviceForward(x: tf.Tensor2D, training: boolean): MoeDeviceResult {
    return moeExpertChoiceDeviceForward(x, this.tensors(), this.config, training);
  }

  protected record(result: MoeExpertChoiceResult): void {
    const { dispatch, slotGates } = result;
    this.last = {
      tokens: dispatch.tokens,
      capacity: dispatch.capacity,
      expertLoad: Int32Array.from(dispatch.expertLoad),
      requestedLoad: Int32Array.from(dispatch.expertLoad),
      droppedAssignments: 0,
      droppedTokens: dispatch.droppedTokens,
    };
    if (this.usage.active) {
      const targets = Int32Array.from({ length: slotGates.length }, (_, s) => Math.floor(s / dispatch.capacity));
      this.usage.add(targets, slotGates);
    }
  }
}
