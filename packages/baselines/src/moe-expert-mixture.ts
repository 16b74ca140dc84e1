// The expert computation shared by both MoE layers, with a hand-written backward pass.
//
// Axes: T tokens, E experts, C capacity (slots per expert), n_e tokens expert e processes (<= C),
// P = sum_e n_e processed assignments, D model width, H expert hidden width, M most slots any
// token occupies.
//
//   xd_e  = x[tokens of expert e]                              gather, [n_e, D]
//   out_e = act(xd_e W1_e + b1_e) W2_e + b2_e                  two 2-D matMuls per expert
//   y[t]  = sum over the experts e that process t of gates[t, e] * out_e[row of t]
//
// Each expert runs plain 2-D matMuls on exactly its tokens: no capacity padding is computed, and
// nothing of size [T, E, H] is built. (A batched [E, C, D] x [E, D, H] matMul was far slower on
// the wasm engine, whose BatchMatMul has no fast path for batch > 1: README.) The combine is a gather: the
// processed rows are concatenated to [P, D] with a zero row appended, and token t sums the (at
// most M) rows listed for it, so neither direction needs a scatter-add.
import * as tf from '@tensorflow/tfjs-core';
import { activationDerivative, activationWithCache, type Activation } from '@peer/backend';
import type { MoeDispatch } from './moe-routing.js';

export interface ExpertParams {
  /** E tensors [D, H] */
  w1: tf.Tensor2D[];
  /** E tensors [H], or null for experts without biases. */
  b1: tf.Tensor1D[] | null;
  /** E tensors [H, D] */
  w2: tf.Tensor2D[];
  /** E tensors [D], or null. */
  b2: tf.Tensor1D[] | null;
}

/** Where each processed assignment sits in the concatenated [P, D] rows (P = none). */
interface CompactLayout {
  /** P */
  rows: number;
  /** [E] first row of each expert */
  offset: Int32Array;
  /** [T*M] rows of token t's assignments, P for none */
  tokenRows: Int32Array;
  /** [T*E] row of pair (t, e), P for none */
  pairRow: Int32Array;
}

function compactLayout(d: MoeDispatch): CompactLayout {
  const { experts: E, capacity: C, expertLoad } = d;
  const offset = new Int32Array(E);
  let rows = 0;
  for (let e = 0; e < E; e++) {
    offset[e] = rows;
    rows += expertLoad[e]!;
  }
  const slotRow = (s: number): number => {
    if (s === E * C) return rows;
    const e = Math.floor(s / C);
    return offset[e]! + (s - e * C);
  };
  return { rows, offset, tokenRows: d.tokenSlots.map(slotRow), pairRow: d.pairSlot.map(slotRow) };
}

/** Per token, the sum of its rows among `parts` (concatenated): [P, D] -> [T, D]. */
function combineRows(parts: tf.Tensor2D[], layout: CompactLayout, d: MoeDispatch, dim: number): tf.Tensor2D {
  const { tokens: T, slotsPerToken: M } = d;
  const padded = tf.concat([...parts, tf.zeros([1, dim])], 0);
  let y: tf.Tensor2D | undefined;
  for (let j = 0; j < M; j++) {
    const column = M === 1 ? layout.tokenRows : Int32Array.from({ length: T }, (_, t) => layout.tokenRows[t * M + j]!);
    const picked = tf.gather(padded, tf.tensor1d(column, 'int32')) as tf.Tensor2D;
    y = y ? (tf.add(y, picked) as tf.Tensor2D) : picked;
  }
  return y!;
}

/**
 * a [n, k] times b [m, k] transposed: [n, m]. Transposes whichever side moves fewer values: b
 * (m k), or a and the result (n k + n m), as (b a^T)^T. For a few tokens per expert against a
 * weight matrix, transposing the activations is several times cheaper.
 */
function matMulTransposedB(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const [n, k] = a.shape;
  const m = b.shape[0];
  if (m * k <= n * (k + m)) return tf.matMul(a, b, false, true);
  return tf.transpose(tf.matMul(b, a, false, true)) as tf.Tensor2D;
}

function checkShapes(x: tf.Tensor2D, gates: tf.Tensor2D, params: ExpertParams, dispatch: MoeDispatch): void {
  const { tokens, experts } = dispatch;
  const E = params.w1.length;
  const [D, H] = params.w1[0]?.shape ?? [0, 0];
  if (E !== experts) throw new Error(`expertMixture: ${E} experts in w1, the dispatch has ${experts}`);
  if (x.rank !== 2 || x.shape[0] !== tokens || x.shape[1] !== D) throw new Error(`expertMixture: x has shape [${x.shape}], expected [${tokens}, ${D}]`);
  if (gates.rank !== 2 || gates.shape[0] !== tokens || gates.shape[1] !== experts) throw new Error(`expertMixture: gates has shape [${gates.shape}], expected [${tokens}, ${experts}]`);
  if ((params.b1 === null) !== (params.b2 === null)) throw new Error('expertMixture: give both biases b1 and b2 or neither');
  const same = (what: string, list: tf.Tensor[] | null, shape: number[]) => {
    if (!list) return;
    if (list.length !== E) throw new Error(`expertMixture: ${what} holds ${list.length} experts, expected ${E}`);
    list.forEach((t, e) => {
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) throw new Error(`expertMixture: ${what}[${e}] has shape [${t.shape}], expected [${shape}]`);
    });
  };
  same('w1', params.w1, [D, H]);
  same('w2', params.w2, [H, D]);
  same('b1', params.b1, [H]);
  same('b2', params.b2, [D]);
}

/**
 * y [T, D] = sum over the experts of each token of gates[t, e] * expert_e(x[t]). Differentiable
 * with respect to x, gates and every expert parameter; the dispatch is a constant.
 */
export function expertMixture(x: tf.Tensor2D, gates: tf.Tensor2D, params: ExpertParams, dispatch: MoeDispatch, activation: Activation): tf.Tensor2D {
  checkShapes(x, gates, params, dispatch);
  const { tokens: T, experts: E, capacity: C, expertLoad } = dispatch;
  const D = x.shape[1];
  const H = params.w1[0]!.shape[1];
  const hasBias = params.b1 !== null;
  const layout = compactLayout(dispatch);
  const active = Array.from({ length: E }, (_, e) => e).filter((e) => expertLoad[e]! > 0);
  const tokensOf = (e: number) => tf.tensor1d(dispatch.slotToken.subarray(e * C, e * C + expertLoad[e]!), 'int32');
  // Inputs: x, gates, then per expert w1, (b1), w2, (b2).
  const perExpert = hasBias ? 4 : 2;
  const inputs: tf.Tensor[] = [x, gates];
  for (let e = 0; e < E; e++) inputs.push(params.w1[e]!, ...(hasBias ? [params.b1![e]!] : []), params.w2[e]!, ...(hasBias ? [params.b2![e]!] : []));

  const mixture = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor2D;
    const flatGates = tf.reshape(args[1] as tf.Tensor2D, [T * E]);
    const param = (e: number, which: 'w1' | 'b1' | 'w2' | 'b2'): tf.Tensor => {
      const at = { w1: 0, b1: 1, w2: hasBias ? 2 : 1, b2: 3 }[which];
      return args[2 + e * perExpert + at] as tf.Tensor;
    };
    const saved: tf.Tensor[] = [];
    const outputs: tf.Tensor2D[] = [];
    for (const e of active) {
      const xd = tf.gather(xIn, tokensOf(e)) as tf.Tensor2D;
      let pre = tf.matMul(xd, param(e, 'w1') as tf.Tensor2D);
      if (hasBias) pre = tf.add(pre, param(e, 'b1'));
      const { value: hidden, cache } = activationWithCache(pre, activation);
      let out = tf.matMul(hidden as tf.Tensor2D, param(e, 'w2') as tf.Tensor2D);
      if (hasBias) out = tf.add(out, param(e, 'b2'));
      const pairs = Int32Array.from({ length: expertLoad[e]! }, (_, c) => dispatch.slotPair[e * C + c]!);
      const g = tf.gather(flatGates, tf.tensor1d(pairs, 'int32'));
      outputs.push(tf.mul(out, tf.expandDims(g, 1)) as tf.Tensor2D);
      saved.push(xd, pre, cache, hidden, out, g, param(e, 'w1'), param(e, 'w2'));
    }
    const y = combineRows(outputs, layout, dispatch, D);
    save(saved);

    const gradFunc = (dy: tf.Tensor, kept: tf.Tensor[]): tf.Tensor[] => {
      const dxRows: tf.Tensor2D[] = [];
      const dGateRows: tf.Tensor1D[] = [];
      const grads = new Map<number, tf.Tensor[]>();
      active.forEach((e, i) => {
        const [xd, pre, cache, hidden, out, g, w1, w2] = kept.slice(i * 8, i * 8 + 8) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor2D, tf.Tensor2D];
        const n = expertLoad[e]!;
        const dWeighted = tf.gather(dy, tokensOf(e)) as tf.Tensor2D;
        dGateRows.push(tf.sum(tf.mul(dWeighted, out), 1) as tf.Tensor1D);
        const dOut = tf.mul(dWeighted, tf.expandDims(g, 1)) as tf.Tensor2D;
        // Sums over tokens are [1, n] products (axis-0 reductions are slow on wasm). Transposed
        // operands go through matMul's flags, never through tf.transpose: on wasm a transpose of a
        // tensor with a size-1 axis shares its data, and the same data fed to matMul as its second
        // operand under two shapes corrupts the engine's operator cache (see the README).
        const ones = tf.ones([1, n]) as tf.Tensor2D;
        const dW2 = tf.matMul(hidden, dOut, true, false);
        const dPre = tf.mul(matMulTransposedB(dOut, w2), activationDerivative(pre, cache, activation)) as tf.Tensor2D;
        const dW1 = tf.matMul(xd, dPre, true, false);
        dxRows.push(matMulTransposedB(dPre, w1));
        grads.set(e, hasBias ? [dW1, tf.reshape(tf.matMul(ones, dPre), [H]), dW2, tf.reshape(tf.matMul(ones, dOut), [D])] : [dW1, dW2]);
      });
      const dx = combineRows(dxRows, layout, dispatch, D);
      const dGates = tf.reshape(tf.gather(tf.concat([...dGateRows, tf.zeros([1])]), tf.tensor1d(layout.pairRow, 'int32')), [T, E]);
      const out: tf.Tensor[] = [dx, dGates];
      for (let e = 0; e < E; e++) out.push(...(grads.get(e) ?? inputs.slice(2 + e * perExpert, 2 + (e + 1) * perExpert).map((t) => tf.zerosLike(t))));
      return out;
    };
    return { value: y, gradFunc };
  });

  return mixture(...inputs) as tf.Tensor2D;
}

/** Forward multiply-adds times 2 for one processed assignment: two matMuls of D x H. */
export function expertSlotFlops(dim: number, hidden: number): number {
  return 2 * (2 * dim * hidden);
}
