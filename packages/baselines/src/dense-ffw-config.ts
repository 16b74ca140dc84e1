// Configuration of the dense feed-forward block, validated once in the constructor.
import { formatValue } from '@peer/backend';
import { ConfigError } from '@peer/feed-forward';
import { z } from 'zod';

export const DENSE_FFW_ACTIVATIONS = ['gelu', 'gelu-tanh', 'relu'] as const;
export type DenseFfwActivation = (typeof DENSE_FFW_ACTIVATIONS)[number];

export const DenseFfwConfigSchema = z.strictObject({
  /** Model width D (input and output). */
  dim: z.number().int().positive(),
  /** Hidden width F. Default 4 * dim. */
  hidden: z.number().int().positive().optional(),
  /** sigma: 'gelu' (exact, erf), 'gelu-tanh' (the tanh approximation) or 'relu'. Default 'gelu'. */
  activation: z.enum(DENSE_FFW_ACTIVATIONS).default('gelu'),
  /** GLU variant: y = W2 (sigma(W1 x + b1) * (W3 x + b3)) + b2. Default false. */
  glu: z.boolean().default(false),
  /** Bias vectors b1, b2 (and b3 with GLU). Default true. */
  bias: z.boolean().default(true),
  /** Seed of the Glorot-uniform weight initialization. Default 0. */
  seed: z.number().int().default(0),
});

export type DenseFfwConfigInput = z.input<typeof DenseFfwConfigSchema>;
export type DenseFfwConfig = Required<z.output<typeof DenseFfwConfigSchema>>;

/** A dense FFW config that failed validation; the message names the field and the value. */
export class DenseFfwConfigError extends ConfigError {
  constructor(message: string) {
    super(message);
    this.name = 'DenseFfwConfigError';
  }
}

/**
 * Validates `input` and fills the defaults; throws `DenseFfwConfigError` such as
 * `invalid dense FFW config: hidden = -3: Too small: expected number to be >0`.
 */
export function parseDenseFfwConfig(input: unknown): DenseFfwConfig {
  const result = DenseFfwConfigSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
      const field = issue.path.length > 0 ? issue.path.map(String).join('.') : '(config)';
      return `${field} = ${formatValue(issue.input, { maxLength: 80 })}: ${issue.message}`;
    });
    throw new DenseFfwConfigError(`invalid dense FFW config: ${problems.join('; ')}`);
  }
  const c = result.data;
  return { ...c, hidden: c.hidden ?? 4 * c.dim };
}
