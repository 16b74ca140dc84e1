// MoE routing and expert mixture for device engines (webgpu), with tfjs ops only: the host path
// (moe-routing.ts, moe-expert-mixture.ts) builds its dispatch in JavaScript from the router
// probabilities, which needs a synchronous read; here the dispatch stays a tensor.
//
// Axes: T tokens, D model width, E experts, H expert hidden width, K experts per token,
// C capacity (slots per expert). A slot is `e * C + c`; a pair is `t * E + e`.
//
// The dispatch is the same as the host's: token choice fills each expert's slots with its first
// choices in token order, then its second choices, and so on (the running count per expert is an
// exclusive cumulative sum over the one-hot assignments in that order), dropping assignments past
// C; expert choice gives each expert its top-C tokens (tf.topk). The experts then run padded to C
// slots each as one batched matMul ([E, C, D] x [E, D, H]): empty slots read a zero input row and
// carry gate 0, so they add exactly nothing to the output or to any gradient. Gradients come from
// tfjs autodiff (gather <-> unsortedSegmentSum).
import * as tf from '@tensorflow/tfjs-core';
import { activate, stopGradient, type Activation } from '@peer/backend';
import type { ExpertParams } from './moe-expert-mixture.js';

// Plain numbers in tfjs binary ops become float32 and would promote the int32 operand.
const int = (n: number): tf.Scalar => tf.scalar(n, 'int32');

/** Where each slot's input comes from. */
export interface DeviceSlots {
  /** [E*C] int32: pair t*E + e of each slot, T*E for an empty slot. */
  slotPair: tf.Tensor1D;
  /** [E*C] int32: token of each slot, T for an empty slot. */
  slotToken: tf.Tensor1D;
}

/** Slots from the pair of each filled slot (scattered; empty slots get T*E). */
function slotsFromPairs(pairs: tf.Tensor1D, slotOfPair: tf.Tensor1D, tokens: number, experts: number, capacity: number): DeviceSlots {
  const slots = experts * capacity;
  // Assignments past capacity land in the extra slot E*C, cut off below; stored as pair + 1 so that 0 marks an empty slot.
  const scattered = tf.scatterND(tf.reshape(slotOfPair, [-1, 1]), tf.add(pairs, int(1)), [slots + 1]) as tf.Tensor1D;
  const stored = tf.slice(scattered, 0, slots);
  const slotPair = tf.where(tf.equal(stored, int(0)), tf.fill([slots], tokens * experts, 'int32'), tf.sub(stored, int(1))) as tf.Tensor1D;
  return { slotPair, slotToken: tf.floorDiv(slotPair, int(experts)) as tf.Tensor1D };
}

export interface DeviceTokenChoiceRouting extends DeviceSlots {
  /** [T, K] int32: the top-K experts of each token, best first (before capacity). */
  choices: tf.Tensor2D;
  /** [E] float32: assignments per expert before capacity. */
  requestedLoad: tf.Tensor1D;
}

/** Token choice on the device: the same dispatch as `tokenChoiceRouting` (moe-routing.ts). */
export function deviceTokenChoiceRouting(probs: tf.Tensor2D, topK: number, capacity: number): DeviceTokenChoiceRouting {
  const [T, E] = probs.shape;
  // Off the tape: the choice is discrete (and tfjs has no gradient for TopK).
  const choices = stopGradient(tf.topk(probs, topK).indices) as tf.Tensor2D;
  // Assignment a = j * T + t: all first choices in token order, then all second choices.
  const experts = tf.reshape(tf.transpose(choices), [topK * T]) as tf.Tensor1D;
  const tokens = tf.tile(tf.range(0, T, 1, 'int32'), [topK]) as tf.Tensor1D;
  const hot = tf.oneHot(experts, E, 1, 0, 'float32') as tf.Tensor2D;
  // Float counts are exact far beyond any batch (2^24).
  const position = tf.sum(tf.mul(tf.cumsum(hot, 0, true), hot), 1);
  const kept = tf.less(position, capacity);
  const slot = tf.add(tf.mul(experts, int(capacity)), tf.cast(position, 'int32'));
  const slotOfPair = tf.where(kept, slot, tf.fill([topK * T], E * capacity, 'int32')) as tf.Tensor1D;
  const pairs = tf.add(tf.mul(tokens, int(E)), experts) as tf.Tensor1D;
  return { ...slotsFromPairs(pairs, slotOfPair, T, E, capacity), choices, requestedLoad: tf.sum(hot, 0) as tf.Tensor1D };
}

/** Expert choice on the device: every expert takes its top-C tokens by router probability. */
export function deviceExpertChoiceSlots(probs: tf.Tensor2D, capacity: number): DeviceSlots {
  const E = probs.shape[1];
  const slotToken = tf.reshape(stopGradient(tf.topk(tf.transpose(probs), capacity).indices), [E * capacity]) as tf.Tensor1D;
  const expertOfSlot = tf.reshape(tf.tile(tf.reshape(tf.range(0, E, 1, 'int32'), [E, 1]), [1, capacity]), [E * capacity]);
  return { slotToken, slotPair: tf.add(tf.mul(slotToken, int(E)), expertOfSlot) as tf.Tensor1D };
}

/** The gate of each slot: gates[t, e] of its pair, 0 for an empty slot. Differentiable in `gates`. */
export function slotGates(gates: tf.Tensor2D, slots: DeviceSlots): tf.Tensor1D {
  const [T, E] = gates.shape;
  return tf.gather(tf.concat([tf.reshape(gates, [T * E]), tf.zeros([1])]), slots.slotPair) as tf.Tensor1D;
}

/**
 * y [T, D] = sum over the filled slots s of gate[s] * expert_e(s)(x[token of s]), every expert
 * padded to `capacity` slots. Differentiable in x, the gates and every expert parameter.
 */
export function deviceExpertMixture(x: tf.Tensor2D, gate: tf.Tensor1D, slots: DeviceSlots, params: ExpertParams, capacity: number, activation: Activation): tf.Tensor2D {
  const [T, D] = x.shape;
  const E = params.w1.length;
  const H = params.w1[0]!.shape[1];
  const xd = tf.reshape(tf.gather(tf.concat([x, tf.zeros([1, D])]), slots.slotToken), [E, capacity, D]) as tf.Tensor3D;
  let pre = tf.matMul(xd, tf.stack(params.w1) as tf.Tensor3D);
  if (params.b1) pre = tf.add(pre, tf.reshape(tf.stack(params.b1), [E, 1, H]));
  let out = tf.matMul(activate(pre, activation), tf.stack(params.w2) as tf.Tensor3D);
  if (params.b2) out = tf.add(out, tf.reshape(tf.stack(params.b2), [E, 1, D]));
  const weighted = tf.reshape(tf.mul(out, tf.reshape(gate, [E, capacity, 1])), [E * capacity, D]);
  return tf.slice(tf.unsortedSegmentSum(weighted, slots.slotToken, T + 1), [0, 0], [T, D]) as tf.Tensor2D;
}
