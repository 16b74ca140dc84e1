// The PEER layer's configuration: a zod schema with the paper's defaults, then the cross-field
// constraints, each failing with one error that names the field and its value.
import { formatValue } from '@peer/backend';
import { ConfigError, valueAtPath } from '@peer/feed-forward';
import { z } from 'zod';

export const SCORE_FUNCTIONS = ['softmax', 'relu'] as const;
export const QUERY_NORMS = ['batch', 'layer', 'none'] as const;
export const EXPERT_ACTIVATIONS = ['gelu', 'gelu-tanh', 'relu'] as const;
export const EXPERT_OPTIMIZERS = ['adam', 'sgd'] as const;

export type ScoreFunction = (typeof SCORE_FUNCTIONS)[number];
export type QueryNorm = (typeof QUERY_NORMS)[number];
export type ExpertActivation = (typeof EXPERT_ACTIVATIONS)[number];

const positiveInt = () => z.int().positive();

/** The sparse optimizer of the two expert tables: its own constant learning rate (PKM practice). */
export const ExpertOptimizerSchema = z.strictObject({
  kind: z.enum(EXPERT_OPTIMIZERS).default('adam'),
  /** Learning rate of the expert tables, multiplied by the schedule's `lrScale` in `sparseStep`. */
  lr: z.number().positive().default(1e-3),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  eps: z.number().positive().default(1e-8),
  /** Heavy-ball momentum of 'sgd'. */
  momentum: z.number().min(0).lt(1).default(0),
  /** Decoupled weight decay of the touched rows (AdamW style). */
  weightDecay: z.number().nonnegative().default(0),
});

export const PeerLayerConfigSchema = z.strictObject({
  /** Model width d. Even (the default dimKey is d/2, as in PEER-pytorch). */
  dim: positiveInt(),
  /** Number of experts N, a perfect square (paper: 1024^2 = 1,048,576). */
  numExperts: z.int().min(4).default(1024 * 1024),
  /** Retrieval heads h (paper: 8). */
  heads: positiveInt().default(8),
  /** Experts retrieved per head, k (paper: 16). */
  topK: positiveInt().default(16),
  /** Width of a sub-key and of each query half, dk (default d/2). */
  dimKey: positiveInt().optional(),
  /** Sub-keys kept per half before the k^2 candidate step (default topK; more is still exact). */
  candidateK: positiveInt().optional(),
  /** Router weights from the k retrieved scores of a head: softmax (paper) or relu. */
  scores: z.enum(SCORE_FUNCTIONS).default('softmax'),
  /** Normalization of the queries before retrieval (paper: batch). */
  queryNorm: z.enum(QUERY_NORMS).default('batch'),
  /** BatchNorm running-statistics momentum (PyTorch convention: new = (1 - m) old + m batch). */
  normMomentum: z.number().gt(0).max(1).default(0.1),
  normEps: z.number().positive().default(1e-5),
  /** Expert nonlinearity sigma: exact-erf GELU (default), its tanh approximation, or ReLU. */
  activation: z.enum(EXPERT_ACTIVATIONS).default('gelu'),
  /** One set of sub-keys for all heads (the paper's text) instead of one per head (PKM code). */
  sharedKeys: z.boolean().default(false),
  /** A separate pool of N experts per head (tables of h*N rows; PEER-pytorch `separate_embed_per_head`). */
  separateExpertsPerHead: z.boolean().default(false),
  /** Dropout on the expert activations sigma(u . x) during training. */
  dropout: z.number().min(0).lt(1).default(0),
  /** Sparse optimizer of the expert tables. */
  expertOptimizer: ExpertOptimizerSchema.default(ExpertOptimizerSchema.parse({})),
  /** Tokens per expert-mixture chunk; bounds the [tokens*h*k, D] rows held at once. */
  tokenChunk: positiveInt().default(1024),
  /**
   * Tokens per product-key retrieval chunk; bounds its temporaries on the tfjs heap. 128 lowers the
   * wasm heap's high-water mark at 512 tokens and N = 1024^2 at no measurable cost (layer README).
   */
  retrievalChunk: positiveInt().default(128),
  /** Seed of the initialization and the dropout stream. */
  seed: z.int().default(0),
});

/** What `new PeerLayer(config)` accepts. */
export type PeerLayerConfig = z.input<typeof PeerLayerConfigSchema>;
export type ExpertOptimizerConfig = z.output<typeof ExpertOptimizerSchema>;

/** A validated config with every default filled in. */
export interface ResolvedPeerConfig extends Omit<z.output<typeof PeerLayerConfigSchema>, 'dimKey' | 'candidateK'> {
  dimKey: number;
  candidateK: number;
  /** sqrt(numExperts): sub-keys per half. */
  subKeys: number;
  /** Rows of each expert table: N, or h*N with separate experts per head. */
  tableRows: number;
}

/** A bad layer config; the message names the field and the value. */
export class PeerConfigError extends ConfigError {
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly problem: string,
  ) {
    super(`invalid PEER layer config: ${field} = ${formatValue(value, { maxLength: 80 })}: ${problem}`);
    this.name = 'PeerConfigError';
  }
}

/** Validates `input`, fills defaults, and checks the constraints between fields. Throws `PeerConfigError`. */
export function resolvePeerConfig(input: unknown): ResolvedPeerConfig {
  const parsed = PeerLayerConfigSchema.safeParse(input);
  if (!parsed.success) {
    // Report the first problem only: one clear error per bad config.
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      const at = [...issue.path.map(String), key].join('.');
      throw new PeerConfigError(at, valueAtPath(input, [...issue.path, key]), 'unknown field');
    }
    const field = issue.path.length === 0 ? '(config)' : issue.path.map(String).join('.');
    throw new PeerConfigError(field, valueAtPath(input, issue.path), issue.message);
  }
  const c = parsed.data;
  const subKeys = Math.round(Math.sqrt(c.numExperts));
  if (subKeys * subKeys !== c.numExperts) {
    throw new PeerConfigError('numExperts', c.numExperts, 'must be a perfect square (product keys index a sqrt(N) x sqrt(N) grid)');
  }
  if (c.dim % 2 !== 0) {
    throw new PeerConfigError('dim', c.dim, 'must be even (the default dimKey is dim / 2)');
  }
  const dimKey = c.dimKey ?? c.dim / 2;
  if (c.topK > subKeys) {
    throw new PeerConfigError('topK', c.topK, `must be at most sqrt(numExperts) = ${subKeys}`);
  }
  const candidateK = c.candidateK ?? c.topK;
  if (candidateK < c.topK) {
    throw new PeerConfigError('candidateK', candidateK, `must be at least topK = ${c.topK}`);
  }
  if (candidateK > subKeys) {
    throw new PeerConfigError('candidateK', candidateK, `must be at most sqrt(numExperts) = ${subKeys}`);
  }
  const tableRows = c.separateExpertsPerHead ? c.heads * c.numExperts : c.numExperts;
  return { ...c, dimKey, candidateK, subKeys, tableRows };
}
