// Validated config of the product-key memory layer. Defaults: the PEER paper's PKM baseline
// (1024^2 memories, 8 heads, top-32, query BatchNorm) with Lample et al.'s value learning rate
// (Adam, 1e-3, separate from the dense parameters).
import { z } from 'zod';
import { parseLayerConfig, positiveInt, requireThat, seedField } from './layer-config.js';

export const PKM_QUERY_NORMS = ['batch', 'none'] as const;
export const VALUE_OPTIMIZERS = ['adam', 'sgd'] as const;

/** The sparse optimizer of the value table: its own learning rate, multiplied by `sparseStep`'s lrScale. */
export const valueOptimizerSchema = z.strictObject({
  kind: z.enum(VALUE_OPTIMIZERS).default('adam'),
  lr: z.number().positive().default(1e-3),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  eps: z.number().positive().default(1e-8),
  /** Decoupled weight decay of touched rows (AdamW style). */
  weightDecay: z.number().nonnegative().default(0),
  /** Clip the value table's row-sparse gradient to this global L2 norm per step. */
  clipNorm: z.number().positive().optional(),
});

export const pkmConfigSchema = z
  .strictObject({
    /** Model width D. */
    dim: positiveInt(),
    /** Memory slots N, a perfect square (paper baseline: 1024^2). */
    memories: z.int().min(4).default(1024 * 1024),
    /** Retrieval heads h. */
    heads: positiveInt().default(8),
    /** Slots retrieved per head, k. */
    topK: positiveInt().default(32),
    /** Width dk of a sub-key and of each query half (default D/2). */
    dimKey: positiveInt().optional(),
    /** Sub-keys kept per half before the candidate sums (default topK; any value >= topK is exact). */
    candidateK: positiveInt().optional(),
    /** BatchNorm over the h*2*dk query features (Lample et al.; the paper's baseline) or none. */
    queryNorm: z.enum(PKM_QUERY_NORMS).default('batch'),
    /** Running-statistics momentum (PyTorch convention: new = (1 - m) old + m batch). */
    normMomentum: z.number().gt(0).max(1).default(0.1),
    normEps: z.number().positive().default(1e-5),
    /** One pair of sub-key tables for all heads instead of one per head. */
    sharedKeys: z.boolean().default(false),
    /** Standard deviation of the normal value initialization (default D^-1/2, as Lample et al.). */
    valueInitStd: z.number().nonnegative().optional(),
    valueOptimizer: valueOptimizerSchema.default(valueOptimizerSchema.parse({})),
    seed: seedField(),
  })
  .superRefine((c, ctx) => {
    const s = Math.round(Math.sqrt(c.memories));
    const square = s * s === c.memories;
    requireThat(ctx, square, 'memories', 'must be a perfect square (the product of two sub-key sets)');
    if (square) requireThat(ctx, c.topK <= s, 'topK', `must be at most sqrt(memories) = ${s}`);
    if (square && c.candidateK !== undefined) requireThat(ctx, c.candidateK >= c.topK && c.candidateK <= s, 'candidateK', `must be between topK (${c.topK}) and sqrt(memories) (${s})`);
    if (c.dimKey === undefined) requireThat(ctx, c.dim % 2 === 0, 'dim', 'must be even when dimKey is not given (default dimKey = dim / 2)');
  });

export type PkmOptions = z.input<typeof pkmConfigSchema>;

export interface PkmConfig extends Omit<z.output<typeof pkmConfigSchema>, 'dimKey' | 'candidateK' | 'valueInitStd'> {
  dimKey: number;
  candidateK: number;
  valueInitStd: number;
  /** sqrt(memories): sub-keys per half. */
  subKeys: number;
  /** h * 2 * dk query features. */
  queryFeatures: number;
}

export function parsePkmConfig(options: unknown): PkmConfig {
  const c = parseLayerConfig('pkm', pkmConfigSchema, options);
  const dimKey = c.dimKey ?? c.dim / 2;
  return {
    ...c,
    dimKey,
    candidateK: c.candidateK ?? c.topK,
    valueInitStd: c.valueInitStd ?? 1 / Math.sqrt(c.dim),
    subKeys: Math.round(Math.sqrt(c.memories)),
    queryFeatures: c.heads * 2 * dimKey,
  };
}
