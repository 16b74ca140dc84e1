// The order of the h*2*dk query features: ours versus PEER-pytorch's.
//
// Axes: h heads, dk sub-key width, F = h * 2 * dk query features, D model width.
//
// Internal (head, half, dk): feature  head * 2dk + half * dk + j,  so that the queries reshape to
//   [T, h, 2dk] (what product-key retrieval takes) with no transpose.
// PEER-pytorch (half, head, dk): feature  half * h*dk + head * dk + j  (its to_queries output goes
//   through rearrange('b n (p h d) -> p b n h d', p = 2)).
// PyTorch's Linear weight is [out, in] = [F, D]; ours is [in, out] = [D, F] (x Wq, no transpose).

/** perm[pytorchFeature] = internalFeature. */
export function pytorchToInternalFeature(heads: number, dimKey: number): Int32Array {
  const perm = new Int32Array(heads * 2 * dimKey);
  for (let half = 0; half < 2; half++) {
    for (let head = 0; head < heads; head++) {
      for (let j = 0; j < dimKey; j++) {
        perm[half * heads * dimKey + head * dimKey + j] = head * 2 * dimKey + half * dimKey + j;
      }
    }
  }
  return perm;
}

/** A per-feature vector (BN gamma, beta, running statistics) from internal to PyTorch order. */
export function featuresToPytorch(values: ArrayLike<number>, heads: number, dimKey: number): Float32Array {
  const perm = pytorchToInternalFeature(heads, dimKey);
  checkLength('query feature vector', values.length, perm.length);
  const out = new Float32Array(perm.length);
  for (let p = 0; p < perm.length; p++) out[p] = values[perm[p]!]!;
  return out;
}

/** A per-feature vector from PyTorch to internal order. */
export function featuresFromPytorch(values: ArrayLike<number>, heads: number, dimKey: number): Float32Array {
  const perm = pytorchToInternalFeature(heads, dimKey);
  checkLength('query feature vector', values.length, perm.length);
  const out = new Float32Array(perm.length);
  for (let p = 0; p < perm.length; p++) out[perm[p]!] = values[p]!;
  return out;
}

/** Wq [D, F] in internal order -> PyTorch `to_queries.0.weight` [F, D] in (half, head, dk) order. */
export function queryWeightToPytorch(wq: ArrayLike<number>, dim: number, heads: number, dimKey: number): Float32Array {
  const perm = pytorchToInternalFeature(heads, dimKey);
  const f = perm.length;
  checkLength('query weight', wq.length, dim * f);
  const out = new Float32Array(f * dim);
  for (let p = 0; p < f; p++) {
    const src = perm[p]!;
    for (let i = 0; i < dim; i++) out[p * dim + i] = wq[i * f + src]!;
  }
  return out;
}

/** PyTorch `to_queries.0.weight` [F, D] -> Wq [D, F] in internal order. */
export function queryWeightFromPytorch(weight: ArrayLike<number>, dim: number, heads: number, dimKey: number): Float32Array {
  const perm = pytorchToInternalFeature(heads, dimKey);
  const f = perm.length;
  checkLength('to_queries.0.weight', weight.length, dim * f);
  const out = new Float32Array(dim * f);
  for (let p = 0; p < f; p++) {
    const dst = perm[p]!;
    for (let i = 0; i < dim; i++) out[i * f + dst] = weight[p * dim + i]!;
  }
  return out;
}

function checkLength(what: string, actual: number, expected: number): void {
  if (actual !== expected) throw new Error(`${what}: expected ${expected} values, got ${actual}`);
}
