// The WGSL programs of the device table (DeviceExpertTable, DeviceRowGradient, the device sparse
// optimizers). Each runs over one row shard [n, D] holding table rows [lo, lo + n): occurrences of
// rows outside the shard contribute nothing, so a table of several shards runs a program once per
// shard, each later shard adding into the output of the first (`first` = 0). Out-of-range rows
// (the caller's bug on a device) read as zeros and receive no gradient.
//
// Axes: N table rows, D row width, T tokens, R rows per token, L = T * R occurrences, U slots of
// summed gradients (one per distinct row, at most min(L, N)), n rows of a shard.
import type * as tf from '@tensorflow/tfjs-core';
import { DEVICE_WORKGROUP, runDeviceProgram, type DeviceUniform } from '@peer/backend/webgpu';

/** A shard of a device table: rows [lo, lo + n) as a [n, D] tensor. */
export interface RowShard {
  readonly lo: number;
  readonly n: number;
  tensor: tf.Tensor2D;
}

function shardUniforms(shard: RowShard, d: number, first: boolean): DeviceUniform[] {
  return [
    { name: 'd', type: 'i32', value: d },
    { name: 'lo', type: 'i32', value: shard.lo },
    { name: 'n', type: 'i32', value: shard.n },
    { name: 'first', type: 'i32', value: first ? 1 : 0 },
  ];
}

/** Runs `one(shard, first, into)` over the shards, each later shard writing into the first's output. */
function overShards(shards: readonly RowShard[], one: (shard: RowShard, first: boolean, into: tf.Tensor | undefined) => tf.Tensor): tf.Tensor {
  let out: tf.Tensor | undefined;
  shards.forEach((shard, i) => {
    out = one(shard, i === 0, out);
  });
  return out!;
}

/**
 * out[t, r] = row(idx[t * R + r]) . x[t]; returns [T, R]. One workgroup per (t, r): its invocations
 * read the row and x[t] at consecutive addresses and add their partial sums in workgroup memory.
 */
export function rowDotsProgram(shards: readonly RowShard[], idx: tf.Tensor1D, x: tf.Tensor2D, perToken: number): tf.Tensor2D {
  const [t, d] = x.shape;
  const pairs = t * perToken;
  return overShards(shards, (shard, first, into) =>
    runDeviceProgram({
      name: 'peer_row_dots',
      inputs: [['rows', shard.tensor], ['idx', idx], ['x', x]],
      outputShape: [t, perToken],
      outputDtype: 'float32',
      into,
      threads: pairs * DEVICE_WORKGROUP,
      guard: false,
      uniforms: [...shardUniforms(shard, d, first), { name: 'r', type: 'i32', value: perToken }, { name: 'pairs', type: 'i32', value: pairs }],
      helpers: `var<workgroup> partial : array<f32, ${DEVICE_WORKGROUP}>;`,
      main: `
  let pair = index / ${DEVICE_WORKGROUP};
  let valid = pair < uniforms.pairs;
  var e = -1;
  if (valid) { e = idx[pair] - uniforms.lo; }
  let inShard = valid && e >= 0 && e < uniforms.n;
  var acc = 0.0;
  if (inShard) {
    let rb = e * uniforms.d;
    let xb = (pair / uniforms.r) * uniforms.d;
    for (var j = local; j < uniforms.d; j = j + ${DEVICE_WORKGROUP}) { acc = acc + rows[rb + j] * x[xb + j]; }
  }
  partial[local] = acc;
  workgroupBarrier();
  for (var half = ${DEVICE_WORKGROUP / 2}; half > 0; half = half / 2) {
    if (local < half) { partial[local] = partial[local] + partial[local + half]; }
    workgroupBarrier();
  }
  if (local == 0 && valid) {
    if (inShard) { result[pair] = partial[0]; } else if (uniforms.first == 1) { result[pair] = 0.0; }
  }`,
    }),
  ) as tf.Tensor2D;
}

/** y[t] = sum_r w[t, r] row(idx[t * R + r]); returns [T, D]. */
export function weightedRowSumProgram(shards: readonly RowShard[], idx: tf.Tensor1D, weights: tf.Tensor2D, d: number): tf.Tensor2D {
  const [t, r] = weights.shape;
  return overShards(shards, (shard, first, into) =>
    runDeviceProgram({
      name: 'peer_weighted_row_sum',
      inputs: [['rows', shard.tensor], ['idx', idx], ['w', weights]],
      outputShape: [t, d],
      outputDtype: 'float32',
      into,
      threads: t * d,
      uniforms: [...shardUniforms(shard, d, first), { name: 'r', type: 'i32', value: r }],
      main: `
  let t = index / uniforms.d;
  let j = index - t * uniforms.d;
  var acc = 0.0;
  if (uniforms.first == 0) { acc = result[index]; }
  for (var k = 0; k < uniforms.r; k++) {
    let o = t * uniforms.r + k;
    let e = idx[o] - uniforms.lo;
    if (e >= 0 && e < uniforms.n) { acc = acc + w[o] * rows[e * uniforms.d + j]; }
  }
  result[index] = acc;`,
    }),
  ) as tf.Tensor2D;
}

/** Rows idx as [L, D]. */
export function gatherProgram(shards: readonly RowShard[], idx: tf.Tensor1D, d: number): tf.Tensor2D {
  const l = idx.size;
  return overShards(shards, (shard, first, into) =>
    runDeviceProgram({
      name: 'peer_gather_rows',
      inputs: [['rows', shard.tensor], ['idx', idx]],
      outputShape: [l, d],
      outputDtype: 'float32',
      into,
      threads: l * d,
      uniforms: shardUniforms(shard, d, first),
      main: `
  let o = index / uniforms.d;
  let e = idx[o] - uniforms.lo;
  if (e >= 0 && e < uniforms.n) {
    result[index] = rows[e * uniforms.d + index - o * uniforms.d];
  } else if (uniforms.first == 1) {
    result[index] = 0.0;
  }`,
    }),
  ) as tf.Tensor2D;
}

/**
 * heads[slot[p]] = p for every sorted position p that starts a group of valid rows (keys ascending
 * [L], rows >= N are invalid): writes into `heads` ([U], filled with -1 beforehand).
 */
export function groupHeadsProgram(keys: tf.Tensor1D, slot: tf.Tensor1D, heads: tf.Tensor1D, rows: number): tf.Tensor1D {
  return runDeviceProgram({
    name: 'peer_group_heads',
    inputs: [['keys', keys], ['slot', slot]],
    into: heads,
    threads: keys.size,
    uniforms: [{ name: 'rows', type: 'i32', value: rows }],
    main: `
  let row = keys[index];
  var head = row < uniforms.rows;
  if (index > 0) { head = head && keys[index - 1] != row; }
  if (head) { result[slot[index]] = index; }`,
  }) as tf.Tensor1D;
}

/** The table row of each slot ([U], -1 for an unused slot). */
export function slotRowsProgram(keys: tf.Tensor1D, heads: tf.Tensor1D): tf.Tensor1D {
  return runDeviceProgram({
    name: 'peer_slot_rows',
    inputs: [['keys', keys], ['heads', heads]],
    outputShape: heads.shape,
    outputDtype: 'int32',
    threads: heads.size,
    main: `
  let p = heads[index];
  if (p >= 0) { result[index] = keys[p]; } else { result[index] = -1; }`,
  }) as tf.Tensor1D;
}

/**
 * The summed gradient of every slot: grads[s] = sum over the group starting at sorted position
 * heads[s] of w[o] x[tok[o]], in sorted order (occurrence order within a row). Returns [U, D].
 */
export function groupSumProgram(
  order: tf.Tensor1D,
  keys: tf.Tensor1D,
  heads: tf.Tensor1D,
  tok: tf.Tensor1D,
  w: tf.Tensor1D,
  x: tf.Tensor2D,
): tf.Tensor2D {
  const d = x.shape[1];
  const u = heads.size;
  return runDeviceProgram({
    name: 'peer_group_sum',
    inputs: [['order', order], ['keys', keys], ['heads', heads], ['tok', tok], ['w', w], ['x', x]],
    outputShape: [u, d],
    outputDtype: 'float32',
    threads: u * d,
    uniforms: [
      { name: 'd', type: 'i32', value: d },
      { name: 'occurrences', type: 'i32', value: keys.size },
    ],
    main: `
  let s = index / uniforms.d;
  let j = index - s * uniforms.d;
  let p0 = heads[s];
  var acc = 0.0;
  if (p0 >= 0) {
    let row = keys[p0];
    var q = p0;
    loop {
      if (q >= uniforms.occurrences) { break; }
      if (keys[q] != row) { break; }
      let o = order[q];
      acc = acc + w[o] * x[tok[o] * uniforms.d + j];
      q = q + 1;
    }
  }
  result[index] = acc;`,
  }) as tf.Tensor2D;
}

/** steps[row] += 1 for every slot's row in the shard (in place). */
export function countStepsProgram(shard: RowShard, steps: tf.Tensor1D, slotRows: tf.Tensor1D): void {
  runDeviceProgram({
    name: 'peer_count_steps',
    inputs: [['slotRows', slotRows]],
    into: steps,
    threads: slotRows.size,
    uniforms: shardUniforms(shard, 1, true),
    main: `
  let e = slotRows[index] - uniforms.lo;
  if (e >= 0 && e < uniforms.n) { result[e] = result[e] + 1; }`,
  });
}

/**
 * A moment update of the shard's touched rows in place: b <- keep * b + mix * g' with g' = g * scale
 * (`squared`: g'^2), the Adam moments (keep = beta, mix = 1 - beta) and SGD momentum (mix = 1).
 */
export function momentProgram(shard: RowShard, moment: tf.Tensor2D, slotRows: tf.Tensor1D, grads: tf.Tensor2D, scale: tf.Tensor1D, keep: number, mix: number, squared: boolean): void {
  const d = grads.shape[1];
  runDeviceProgram({
    name: squared ? 'peer_moment_squared' : 'peer_moment',
    inputs: [['slotRows', slotRows], ['grads', grads], ['scale', scale]],
    into: moment,
    threads: grads.size,
    uniforms: [...shardUniforms(shard, d, true), { name: 'keep', type: 'f32', value: keep }, { name: 'mix', type: 'f32', value: mix }],
    main: `
  let s = index / uniforms.d;
  let e = slotRows[s] - uniforms.lo;
  if (e >= 0 && e < uniforms.n) {
    let g = grads[index] * scale[0];
    let at = e * uniforms.d + index - s * uniforms.d;
    result[at] = uniforms.keep * result[at] + uniforms.mix * ${squared ? 'g * g' : 'g'};
  }`,
  });
}

// 1 - beta^t = -expm1(t ln beta): the series near 0 keeps the relative error of the bias
// correction at float32 rounding where 1 - pow(beta, t) would lose digits (beta2 = 0.999, small t).
const ONE_MINUS_POW = `
fn oneMinusPow(lnBeta : f32, t : f32) -> f32 {
  let x = lnBeta * t;
  if (abs(x) < 0.5) {
    var term = x;
    var sum = x;
    for (var k = 2; k < 12; k++) {
      term = term * x / f32(k);
      sum = sum + term;
    }
    return -sum;
  }
  return 1.0 - exp(x);
}`;

export interface AdamProgramArgs {
  lr: number;
  decay: number;
  eps: number;
  lnBeta1: number;
  lnBeta2: number;
}

/** The AdamW row update of the shard's touched rows in place, after their moments and steps. */
export function adamRowsProgram(shard: RowShard, slotRows: tf.Tensor1D, m: tf.Tensor2D, v: tf.Tensor2D, steps: tf.Tensor1D, d: number, a: AdamProgramArgs): void {
  runDeviceProgram({
    name: 'peer_adam_rows',
    inputs: [['slotRows', slotRows], ['m', m], ['v', v], ['steps', steps]],
    into: shard.tensor,
    threads: slotRows.size * d,
    uniforms: [
      ...shardUniforms(shard, d, true),
      { name: 'lr', type: 'f32', value: a.lr },
      { name: 'decay', type: 'f32', value: a.decay },
      { name: 'eps', type: 'f32', value: a.eps },
      { name: 'lnBeta1', type: 'f32', value: a.lnBeta1 },
      { name: 'lnBeta2', type: 'f32', value: a.lnBeta2 },
    ],
    helpers: ONE_MINUS_POW,
    main: `
  let s = index / uniforms.d;
  let e = slotRows[s] - uniforms.lo;
  if (e >= 0 && e < uniforms.n) {
    let t = f32(steps[e]);
    let stepSize = uniforms.lr / oneMinusPow(uniforms.lnBeta1, t);
    let invSqrtBc2 = 1.0 / sqrt(oneMinusPow(uniforms.lnBeta2, t));
    let at = e * uniforms.d + index - s * uniforms.d;
    result[at] = uniforms.decay * result[at] - stepSize * m[at] / (sqrt(v[at]) * invSqrtBc2 + uniforms.eps);
  }`,
  });
}

/** The SGD row update in place: w <- decay * w - lr * b (b: the momentum buffer, or the scaled gradient). */
export function sgdRowsProgram(shard: RowShard, slotRows: tf.Tensor1D, grads: tf.Tensor2D, scale: tf.Tensor1D, momentum: tf.Tensor2D | undefined, lr: number, decay: number): void {
  const d = grads.shape[1];
  runDeviceProgram({
    name: momentum ? 'peer_sgd_rows_momentum' : 'peer_sgd_rows',
    inputs: [['slotRows', slotRows], ['grads', grads], ['scale', scale], ...(momentum ? ([['b', momentum]] as const) : [])],
    into: shard.tensor,
    threads: grads.size,
    uniforms: [...shardUniforms(shard, d, true), { name: 'lr', type: 'f32', value: lr }, { name: 'decay', type: 'f32', value: decay }],
    main: `
  let s = index / uniforms.d;
  let e = slotRows[s] - uniforms.lo;
  if (e >= 0 && e < uniforms.n) {
    let at = e * uniforms.d + index - s * uniforms.d;
    let step = ${momentum ? 'b[at]' : 'grads[index] * scale[0]'};
    result[at] = uniforms.decay * result[at] - uniforms.lr * step;
  }`,
  });
}
