// FLOP and parameter accounting of a PEER layer, following the cost table of the spec.
// The trainer's isoFLOP runs divide a compute budget by these numbers: keep them exact and simple.
//
// Axes: D model width, h heads, k experts per head, dk sub-key width, n = sqrt(N) sub-keys per half,
// c candidateK (sub-keys kept per half), H' key sets (1 shared, else h), N experts.
import type { ResolvedPeerConfig } from './config.js';

export interface PeerFlops {
  /** q = x Wq: D * h * 2dk multiply-adds. */
  queryProjection: number;
  /** s1 = C1 q1, s2 = C2 q2 for every head: h * 2 * n * dk multiply-adds. */
  subKeyScores: number;
  /** The c^2 candidate sums s1_a + s2_b per head: h * c^2 additions (1 FLOP each). */
  candidateSums: number;
  /** u . x and g * sigma(.) * v for the h*k retrieved experts: 2 * h * k * D multiply-adds. */
  experts: number;
  /** The sum of the parts above. */
  total: number;
}

/**
 * Forward FLOPs per token, a multiply-add counted as 2 FLOPs:
 *
 *   total = 2 D h 2dk  +  2 h 2 n dk  +  h c^2  +  2 (2 h k D)
 *
 * Not counted (each O(h dk + h k) per token, below 1% at the paper's sizes): the query
 * normalization, the router softmax, the expert nonlinearity and the router-weight products.
 * The top-k selections (over n twice and over c^2 once per head) are comparisons, not FLOPs.
 */
export function peerFlops(c: ResolvedPeerConfig): PeerFlops {
  const { dim: D, heads: h, topK: k, dimKey: dk, subKeys: n, candidateK } = c;
  const queryProjection = 2 * D * h * 2 * dk;
  const subKeyScores = 2 * h * 2 * n * dk;
  const candidateSums = h * candidateK * candidateK;
  const experts = 2 * (2 * h * k * D);
  return { queryProjection, subKeyScores, candidateSums, experts, total: queryProjection + subKeyScores + candidateSums + experts };
}

export interface PeerParams {
  /** Wq: D * h * 2dk. */
  queryProjection: number;
  /** Query norm gamma and beta: 2 * h * 2dk ('batch' and 'layer'), 0 for 'none'. Running statistics are not parameters. */
  queryNorm: number;
  /** Sub-keys: H' * 2 * n * dk. */
  subKeys: number;
  /** u and v tables: 2 * N * D (2 * h * N * D with a separate pool per head). */
  experts: number;
  total: number;
}

/** All parameters of the layer. */
export function peerParams(c: ResolvedPeerConfig): PeerParams {
  const { dim: D, heads: h, dimKey: dk, subKeys: n } = c;
  const queryProjection = D * h * 2 * dk;
  const queryNorm = c.queryNorm === 'none' ? 0 : 2 * h * 2 * dk;
  const subKeys = (c.sharedKeys ? 1 : h) * 2 * n * dk;
  const experts = 2 * c.tableRows * D;
  return { queryProjection, queryNorm, subKeys, experts, total: queryProjection + queryNorm + subKeys + experts };
}

/**
 * Parameters that take part in processing one token: the query projection and norm, every sub-key
 * (all n of each half are scored), and the u and v rows of the h*k retrieved experts (2 h k D).
 */
export function peerActiveParams(c: ResolvedPeerConfig): number {
  const p = peerParams(c);
  return p.queryProjection + p.queryNorm + p.subKeys + 2 * c.heads * c.topK * c.dim;
}
