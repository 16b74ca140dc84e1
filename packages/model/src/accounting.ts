// FLOP and parameter accounting of the transformer, as plain formulas of the config and of what the
// feed-forward layers report. A multiply-add counts 2 FLOPs; only matMul-like work is counted
// (norms, softmax, activations, residual adds, the embedding lookup and RoPE are not).
//
// Axes: D model width, S sequence length (= seqLen here), V vocabulary; L blocks.
// Forward FLOPs per token:
//   per block   2*D*3D (fused QKV) + 2*S*D (q k^T over S keys, all heads) + 2*S*D (P v) + 2*D*D (output proj)
//               = 8 D^2 + 4 S D, plus the block's FFW (its flopsPerToken())
//   output      2*D*V (logits; tied or not)
// A training step costs 3x the forward (backward = 2x forward): trainingFlopsPerToken.
// The attention terms count the full S x S score matrix (the causal mask does not halve the
// matMuls as written), at the full context length S.
import type { ModelConfig } from './config.js';

export interface FeedForwardCosts {
  flopsPerToken: number;
  totalParams: number;
  activeParamsPerToken: number;
}

export interface ParamCounts {
  /** Every parameter of the model (sparse tables included). */
  total: number;
  /** Parameters that process one token: `total` less the FFW parameters a token does not use. */
  activePerToken: number;
  /** The token embedding V*D, plus the position table seqLen*D with learned positions. */
  embedding: number;
}

/** Attention FLOPs per token of one block: 8 D^2 + 4 S D. */
export function attentionFlopsPerToken(dim: number, seqLen: number): number {
  return 8 * dim * dim + 4 * seqLen * dim;
}

/** Forward FLOPs per token of the model (see the formula at the top of this file). */
export function modelFlopsPerToken(config: ModelConfig, ffws: readonly FeedForwardCosts[]): number {
  const attention = config.layers * attentionFlopsPerToken(config.dim, config.seqLen);
  const ffw = ffws.reduce((s, f) => s + f.flopsPerToken, 0);
  return attention + ffw + 2 * config.dim * config.vocabSize;
}

/** Parameters of one normalization layer: gamma and beta (LayerNorm) or gamma (RMSNorm). */
export function normParams(config: ModelConfig): number {
  return config.norm === 'layernorm' ? 2 * config.dim : config.dim;
}

export function modelParamCounts(config: ModelConfig, ffws: readonly FeedForwardCosts[]): ParamCounts {
  const { dim: D, vocabSize: V, seqLen: S, layers: L } = config;
  const embedding = V * D + (config.positions === 'learned' ? S * D : 0);
  const attention = 4 * D * D; // fused QKV [D, 3D] + output projection [D, D]
  const blocks = L * (2 * normParams(config) + attention);
  const ffwTotal = ffws.reduce((s, f) => s + f.totalParams, 0);
  const ffwActive = ffws.reduce((s, f) => s + f.activeParamsPerToken, 0);
  const output = config.tieEmbeddings ? 0 : D * V;
  const total = embedding + blocks + ffwTotal + normParams(config) + output;
  return { total, activePerToken: total - ffwTotal + ffwActive, embedding };
}
