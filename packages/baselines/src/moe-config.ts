// Validated configs of the two MoE layers. Defaults: Switch (token choice, K = 1, capacity 1.25
// in training and 2 in evaluation, load-balancing coefficient 0.01) and the expert-choice MoE of
// the PEER paper's baseline (capacity factor 1: on average one expert per token).
import { z } from 'zod';
import { ACTIVATIONS } from '@peer/backend';
import { nonNegative, parseLayerConfig, positiveInt, requireThat, seedField } from './layer-config.js';

const expertFields = {
  /** Model width D. */
  dim: positiveInt(),
  /** Number of experts E. */
  experts: positiveInt(),
  /** Hidden width H of each expert (a dense FFW D -> H -> D). Default 4 * dim, the dense FFW's. */
  hidden: positiveInt().optional(),
  activation: z.enum(ACTIVATIONS).default('gelu'),
  /** Biases b1, b2 in each expert, as in the dense FFW. */
  bias: z.boolean().default(true),
  /** Router z-loss coefficient (ST-MoE uses 1e-3): zLossCoef * mean_t logsumexp(logits_t)^2. */
  zLossCoef: nonNegative().default(0),
  /** Seed of the initialization. */
  seed: seedField(),
};

export const moeTokenChoiceConfigSchema = z
  .strictObject({
    ...expertFields,
    /** Experts per token K: 1 is Switch, 2 is GShard. */
    topK: positiveInt().default(1),
    /** Capacity per expert C = ceil(T * K * capacityFactor / E) in training. */
    capacityFactor: z.number().positive().default(1.25),
    /** The same in evaluation. */
    evalCapacityFactor: z.number().positive().default(2),
    /** K >= 2: divide the top-K gates of a token by their sum (GShard). K = 1 always uses the raw probability (Switch). */
    normalizeGates: z.boolean().default(true),
    /** Load-balancing loss coefficient alpha: alpha * E * sum_e f_e P_e. */
    auxLossCoef: nonNegative().default(0.01),
  })
  .superRefine((c, ctx) => requireThat(ctx, c.topK <= c.experts, 'topK', `must be at most experts (${c.experts})`));

export type MoeTokenChoiceOptions = z.input<typeof moeTokenChoiceConfigSchema>;
export type MoeTokenChoiceConfig = z.output<typeof moeTokenChoiceConfigSchema> & { hidden: number };

export const moeExpertChoiceConfigSchema = z.strictObject({
  ...expertFields,
  /** Tokens per expert C = ceil(T * capacityFactor / E): on average each token is processed by capacityFactor experts. */
  capacityFactor: z.number().positive().default(1),
  /** The same in evaluation; defaults to capacityFactor. */
  evalCapacityFactor: z.number().positive().optional(),
});

export type MoeExpertChoiceOptions = z.input<typeof moeExpertChoiceConfigSchema>;
export type MoeExpertChoiceConfig = z.output<typeof moeExpertChoiceConfigSchema> & { hidden: number; evalCapacityFactor: number };

export function parseMoeTokenChoiceConfig(options: unknown): MoeTokenChoiceConfig {
  const c = parseLayerConfig('moe', moeTokenChoiceConfigSchema, options);
  return { ...c, hidden: c.hidden ?? 4 * c.dim };
}

export function parseMoeExpertChoiceConfig(options: unknown): MoeExpertChoiceConfig {
  const c = parseLayerConfig('moe-ec', moeExpertChoiceConfigSchema, options);
  return { ...c, hidden: c.hidden ?? 4 * c.dim, evalCapacityFactor: c.evalCapacityFactor ?? c.capacityFactor };
}
