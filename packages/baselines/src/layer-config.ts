// Config validation shared by the layers: zod schemas, and one readable error per bad config that
// names the layer, each offending field and the value it had.
import { formatValue } from '@peer/backend';
import { ConfigError, valueAtPath } from '@peer/feed-forward';
import { z } from 'zod';

/** Thrown for a config that fails validation; `issues` lists `field = value: problem` lines. */
export class LayerConfigError extends ConfigError {
  constructor(
    readonly layer: string,
    readonly issues: string[],
  ) {
    super(`invalid ${layer} config: ${issues.join('; ')}`);
    this.name = 'LayerConfigError';
  }
}

/**
 * Validates `input` against `schema` (defaults filled in) or throws a `LayerConfigError` such as
 * `invalid moe config: topK = 5: must be at most experts (4)`.
 */
export function parseLayerConfig<S extends z.ZodType>(layer: string, schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
    const field = issue.path.length === 0 ? '(config)' : issue.path.map(String).join('.');
    return `${field} = ${formatValue(valueAtPath(input, issue.path), { maxLength: 80 })}: ${issue.message}`;
  });
  throw new LayerConfigError(layer, issues);
}

/** Field helpers shared by the layer schemas. */
export const positiveInt = () => z.int().positive();
export const nonNegative = () => z.number().nonnegative();
export const seedField = () => z.int().default(0);

/** Adds `message` at `field` when `ok` is false (for cross-field checks in superRefine). */
export function requireThat(ctx: z.RefinementCtx, ok: boolean, field: string, message: string): void {
  if (!ok) ctx.addIssue({ code: 'custom', path: [field], message });
}
