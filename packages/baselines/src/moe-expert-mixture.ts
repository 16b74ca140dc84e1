// The expert computation shared by both MoE layers, with a hand-written backward pass.
//
// Axes: T tokens, E experts, C capacity (slots per expert), D model width, H expert hidden width,
// M most slots any token occupies.
//
//   xd[e, c]  = x[slotToken[e, c]]                         gather, [E, C, D] (empty slot: zero row)
//   out[e, c] = act(xd[e, c] W1[e] + b1[e]) W2[e] + b2[e]   batched matMul over experts, [E, C, D]
//   y[t]      = sum over slots (e, c) holding t of gates[t, e] * out[e, c]
//
// The combine is written as a gather too: token t reads its (at most M) slots through `tokenSlots`
// from the slot outputs with a zero row appended, so neither direction needs a scatter-add, and
// nothing of size [T, E, H] is ever built: the work is E * C * (2 D H) multiply-adds each way.
import * as tf from '@tensorflow/tfjs-core';
import { activationDerivative, activationForward, type Activation } from './activation.js';
import type { MoeDispatch } from './moe-routing.js';

export interface ExpertParams {
  /** [E, D, H] */
  w1: tf.Tensor3D;
  /** [E, H], or null for experts without biases. */
  b1: tf.Tensor2D | null;
  /** [E, H, D] */
  w2: tf.Tensor3D;
  /** [E, D], or null. */
  b2: tf.Tensor2D | null;
}

/** rows [R, D] -> [R + 1, D] with a zero last row, the target of "empty" indices. */
function withZeroRow(rows: tf.Tensor2D): tf.Tensor2D {
  return tf.concat([rows, tf.zeros([1, rows.shape[1]])], 0);
}

/** Per token, the sum of its (at most M) slot rows: [E*C, D] -> [T, D]. */
function combineSlots(slotRows: tf.Tensor2D, dispatch: MoeDispatch): tf.Tensor2D {
  const { tokens, slotsPerToken, tokenSlots } = dispatch;
  const dim = slotRows.shape[1];
  const picked = tf.gather(withZeroRow(slotRows), tf.tensor1d(tokenSlots, 'int32'));
  if (slotsPerToken === 1) return picked;
  return tf.sum(tf.reshape(picked, [tokens, slotsPerToken, dim]), 1);
}

/** Rows of `source` [T, D] for each slot: [E*C, D] (empty slots read zeros). */
function gatherSlotRows(source: tf.Tensor2D, dispatch: MoeDispatch, hasEmptySlots: boolean): tf.Tensor2D {
  const index = tf.tensor1d(dispatch.slotToken, 'int32');
  return tf.gather(hasEmptySlots ? withZeroRow(source) : source, index);
}

function checkShapes(x: tf.Tensor2D, gates: tf.Tensor2D, params: ExpertParams, dispatch: MoeDispatch): void {
  const { tokens, experts } = dispatch;
  const [E, D, H] = params.w1.shape;
  if (x.rank !== 2 || x.shape[0] !== tokens || x.shape[1] !== D) throw new Error(`expertMixture: x has shape [${x.shape}], expected [${tokens}, ${D}]`);
  if (gates.rank !== 2 || gates.shape[0] !== tokens || gates.shape[1] !== experts) throw new Error(`expertMixture: gates has shape [${gates.shape}], expected [${tokens}, ${experts}]`);
  if (E !== experts) throw new Error(`expertMixture: w1 holds ${E} experts, the dispatch ${experts}`);
  if (params.w2.shape[0] !== E || params.w2.shape[1] !== H || params.w2.shape[2] !== D) throw new Error(`expertMixture: w2 has shape [${params.w2.shape}], expected [${E}, ${H}, ${D}]`);
  if ((params.b1 === null) !== (params.b2 === null)) throw new Error('expertMixture: give both biases b1 and b2 or neither');
  if (params.b1 && (params.b1.shape[0] !== E || params.b1.shape[1] !== H)) throw new Error(`expertMixture: b1 has shape [${params.b1.shape}], expected [${E}, ${H}]`);
  if (params.b2 && (params.b2.shape[0] !== E || params.b2.shape[1] !== D)) throw new Error(`expertMixture: b2 has shape [${params.b2.shape}], expected [${E}, ${D}]`);
}

/**
 * y [T, D] = sum over the slots of each token of gates[t, e] * expert_e(x[t]). Differentiable with
 * respect to x, gates and every expert parameter; the dispatch is a constant.
 */
export function expertMixture(x: tf.Tensor2D, gates: tf.Tensor2D, params: ExpertParams, dispatch: MoeDispatch, activation: Activation): tf.Tensor2D {
  checkShapes(x, gates, params, dispatch);
  const { tokens: T, experts: E, capacity: C } = dispatch;
  const D = x.shape[1];
  const hasBias = params.b1 !== null;
  let filled = 0;
  for (let e = 0; e < E; e++) filled += dispatch.expertLoad[e]!;
  const hasEmptySlots = filled < E * C;

  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor2D;
    const gatesIn = args[1] as tf.Tensor2D;
    const w1 = args[2] as tf.Tensor3D;
    const b1 = hasBias ? (args[3] as tf.Tensor2D) : null;
    const w2 = args[hasBias ? 4 : 3] as tf.Tensor3D;
    const b2 = hasBias ? (args[5] as tf.Tensor2D) : null;

    const xd = tf.reshape(gatherSlotRows(xIn, dispatch, hasEmptySlots), [E, C, D]) as tf.Tensor3D;
    let pre = tf.matMul(xd, w1);
    if (b1) pre = tf.add(pre, tf.expandDims(b1, 1));
    const hidden = activationForward(pre, activation) as tf.Tensor3D;
    let out = tf.matMul(hidden, w2);
    if (b2) out = tf.add(out, tf.expandDims(b2, 1));
    const outRows = tf.reshape(out, [E * C, D]) as tf.Tensor2D;
    const slotGates = tf.gather(tf.concat([tf.reshape(gatesIn, [-1]), tf.zeros([1])]), tf.tensor1d(dispatch.slotPair, 'int32'));
    const y = combineSlots(tf.mul(outRows, tf.expandDims(slotGates, 1)), dispatch);
    save([xd, pre, hidden, outRows, slotGates, w1, w2]);

    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sxd, spre, shidden, sout, sgates, sw1, sw2] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor2D, tf.Tensor1D, tf.Tensor3D, tf.Tensor3D];
      const H = sw1.shape[2];
      // d weighted-out rows = dy of the slot's token (zero for empty slots).
      const dWeighted = gatherSlotRows(dy as tf.Tensor2D, dispatch, hasEmptySlots);
      const dSlotGates = tf.sum(tf.mul(dWeighted, sout), 1);
      const dGates = tf.reshape(tf.gather(tf.concat([dSlotGates, tf.zeros([1])]), tf.tensor1d(dispatch.pairSlot, 'int32')), [T, E]);
      const dOut = tf.reshape(tf.mul(dWeighted, tf.expandDims(sgates, 1)), [E, C, D]);
      // Transposes are explicit: transposed matMuls are slow on some engines (engine-notes).
      const dW2 = tf.matMul(tf.transpose(shidden, [0, 2, 1]), dOut);
      const dHidden = tf.matMul(dOut, tf.transpose(sw2, [0, 2, 1]));
      const dPre = tf.mul(dHidden, activationDerivative(spre, activation));
      const dW1 = tf.matMul(tf.transpose(sxd, [0, 2, 1]), dPre);
      const dxd = tf.reshape(tf.matMul(dPre, tf.transpose(sw1, [0, 2, 1])), [E * C, D]) as tf.Tensor2D;
      const dx = combineSlots(dxd, dispatch);
      if (!hasBias) return [dx, dGates, dW1, dW2];
      const db1 = tf.reshape(tf.sum(dPre, 1), [E, H]);
      const db2 = tf.reshape(tf.sum(dOut, 1), [E, D]);
      return [dx, dGates, dW1, db1, dW2, db2];
    };
    return { value: y, gradFunc };
  });

  const inputs: tf.Tensor[] = hasBias ? [x, gates, params.w1, params.b1!, params.w2, params.b2!] : [x, gates, params.w1, params.w2];
  return mixture(...inputs) as tf.Tensor2D;
}

/** Forward multiply-adds times 2 for one filled slot: two matMuls of D x H. */
export function expertSlotFlops(dim: number, hidden: number): number {
  return 2 * (2 * dim * hidden);
}
