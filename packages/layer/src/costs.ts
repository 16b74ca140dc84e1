// FLOP and parameter accounting of a PEER layer, following the cost table of the spec.
// The trainer's isoFLOP runs divide a compute budget by these numbers: keep them exact and simple.
//
// d model width, h heads, k experts per head, dk sub-key width, S = sqrt(N) sub-keys per half,
// c candidateK (sub-keys kept per half), H' key sets (1 shared, else h), N experts.
import type { ResolvedPeerConfig } from './config.js';

export interface PeerFlops {
  /** q = x Wq: d * h * 2dk multiply-adds. */
  queryProjection: number;
  /** s1 = C1 q1, s2 = C2 q2 for every head: h * 2 * S * dk multiply-adds. */
  subKeyScores: number;
  /** The c^2 candidate sums s1_a + s2_b per head: h * c^2 additions (1 FLOP each). */
  candidateSums: number;
  /** u . x and g * sigma(.) * v for the h*k retrieved experts: 2 * h * k * d multiply-adds. */
  experts: number;
  /** The sum of the parts above. */
  total: number;
}

/**
 * Forward FLOPs per token, a multiply-add counted as 2 FLOPs:
 *
 *   total = 2 d h 2dk  +  2 h 2 S dk  +  h c^2  +  2 (2 h k d)
 *
 * Not counted (each O(h dk + h k) per token, below 1% at the paper's sizes): the query
 * normalization, the router softmax, the expert nonlinearity and the router-weight products.
 * The top-k selections (over S twice and over c^2 once per head) are comparisons, not FLOPs.
 */
export function peerFlops(c: ResolvedPeerConfig): PeerFlops {
  const { dim: d, heads: h, topK: k, dimKey: dk, subKeys: s, candidateK } = c;
  const queryProjection = 2 * d * h * 2 * dk;
  const subKeyScores = 2 * h * 2 * s * dk;
  const candidateSums = h * candidateK * candidateK;
  const experts = 2 * (2 * h * k * d);
  return { queryProjection, subKeyScores, candidateSums, experts, total: queryProjection + subKeyScores + candidateSums + experts };
}

export interface PeerParams {
  /** Wq: d * h * 2dk. */
  queryProjection: number;
  /** Query norm gamma and beta: 2 * h * 2dk ('batch' and 'layer'), 0 for 'none'. Running statistics are not parameters. */
  queryNorm: number;
  /** Sub-keys: H' * 2 * S * dk. */
  subKeys: number;
  /** u and v tables: 2 * N * d (2 * h * N * d with a separate pool per head). */
  experts: number;
  total: number;
}

/** All parameters of the layer. */
export function peerParams(c: ResolvedPeerConfig): PeerParams {
  const { dim: d, heads: h, dimKey: dk, subKeys: s } = c;
  const queryProjection = d * h * 2 * dk;
  const queryNorm = c.queryNorm === 'none' ? 0 : 2 * h * 2 * dk;
  const subKeys = (c.sharedKeys ? 1 : h) * 2 * s * dk;
  const experts = 2 * c.tableRows * d;
  return { queryProjection, queryNorm, subKeys, experts, total: queryProjection + queryNorm + subKeys + experts };
}

/**
 * Parameters that take part in processing one token: the query projection and norm, every sub-key
 * (all S of each half are scored), and the u and v rows of the h*k retrieved experts (2 h k d).
 */
export function peerActiveParams(c: ResolvedPeerConfig): number {
  const p = peerParams(c);
  return p.queryProjection + p.queryNorm + p.subKeys + 2 * c.heads * c.topK * c.dim;
}
