// The model's configuration: one zod schema with the defaults written next to each field
// (nanoGPT style), plus the cross-field checks that a schema per field cannot express.
import { formatValue } from '@peer/backend';
import { ConfigError, FEED_FORWARD_KINDS } from '@peer/feed-forward';
import { z } from 'zod';

const positiveInt = () => z.number().int().positive();

export const FeedForwardConfigSchema = z.strictObject({
  /** The layer of the sparse blocks (all blocks when 'dense'). */
  kind: z.enum(FEED_FORWARD_KINDS).default('dense'),
  /** Hidden width of every dense FFW block. Default 4 * dim. */
  hidden: positiveInt().optional(),
  /**
   * Passed to the layer factory of `kind` (e.g. PEER's experts, heads, topK). With kind 'dense' they
   * reach every block; otherwise only the sparse blocks, and the dense blocks get `{ hidden }`.
   */
  options: z.record(z.string(), z.unknown()).default({}),
});

export const ModelConfigSchema = z
  .strictObject({
    /** Vocabulary size V (required; 256 for the byte tokenizer). */
    vocabSize: positiveInt(),
    /** Model width D. */
    dim: positiveInt().default(256),
    /** Number of transformer blocks L. */
    layers: positiveInt().default(4),
    /** Attention heads H; must divide dim. */
    heads: positiveInt().default(4),
    /** Context length S (the longest sequence; the FLOP count assumes it). */
    seqLen: positiveInt().default(256),
    ffw: FeedForwardConfigSchema.default({ kind: 'dense', options: {} }),
    /** Blocks whose FFW is `ffw.kind`: 'middle' = block floor(layers / 2) only (as in the paper). */
    sparseBlocks: z
      .union([z.literal('middle'), z.array(z.number().int().nonnegative())], {
        error: 'expected "middle" or a list of block indices',
      })
      .default('middle'),
    /** Output projection = transposed token embedding. */
    tieEmbeddings: z.boolean().default(true),
    /** Rotary (applied to queries and keys) or learned absolute positions. */
    positions: z.enum(['rope', 'learned']).default('rope'),
    /** RoPE base (theta). */
    ropeBase: z.number().positive().default(10_000),
    /** Dropout on the residual branches and the embedding, training only. */
    dropout: z.number().min(0).lt(1).default(0),
    /** Normalization before attention, before the FFW and at the end. */
    norm: z.enum(['layernorm', 'rmsnorm']).default('layernorm'),
    /** Epsilon of the normalization. */
    normEps: z.number().positive().default(1e-5),
    /** Seed of the weight initialization and of dropout. */
    seed: z.number().int().default(0),
  })
  .superRefine((c, ctx) => {
    const fail = (path: (string | number)[], message: string, input: unknown) => ctx.addIssue({ code: 'custom', path, message, input });
    if (c.dim % c.heads !== 0) fail(['heads'], `must divide dim (${c.dim})`, c.heads);
    else if (c.positions === 'rope' && (c.dim / c.heads) % 2 !== 0) {
      fail(['heads'], `rope needs an even head width, dim / heads = ${c.dim / c.heads}`, c.heads);
    }
    const blocks = c.sparseBlocks;
    if (Array.isArray(blocks)) {
      blocks.forEach((b, i) => {
        if (b >= c.layers) fail(['sparseBlocks', i], `block index out of range: the model has ${c.layers} blocks (0..${c.layers - 1})`, b);
        else if (blocks.indexOf(b) !== i) fail(['sparseBlocks', i], 'repeated block index', b);
      });
    }
  });

export type ModelConfigInput = z.input<typeof ModelConfigSchema>;

type Parsed = z.output<typeof ModelConfigSchema>;

/** A fully resolved config: every default filled in, `ffw.hidden` set, `sparseBlocks` a sorted list. */
export interface ModelConfig extends Omit<Parsed, 'ffw' | 'sparseBlocks'> {
  ffw: { kind: Parsed['ffw']['kind']; hidden: number; options: Record<string, unknown> };
  sparseBlocks: number[];
}

/** A model config that failed validation; `issues` holds one `field = value: problem` line each. */
export class ModelConfigError extends ConfigError {
  constructor(readonly issues: string[]) {
    super(`invalid model config: ${issues.join('; ')}`);
    this.name = 'ModelConfigError';
  }
}

/**
 * Validates `input`, fills the defaults and resolves 'middle' and `ffw.hidden`. Throws a
 * `ModelConfigError` such as `invalid model config: heads = 3: must divide dim (256)`.
 * Parsing a resolved config again returns an equal config.
 */
export function parseModelConfig(input: unknown): ModelConfig {
  const result = ModelConfigSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    throw new ModelConfigError(
      result.error.issues.map((issue) => {
        if (issue.code === 'unrecognized_keys') {
          const where = issue.path.length > 0 ? ` in ${issue.path.join('.')}` : '';
          return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}${where}`;
        }
        const field = issue.path.length > 0 ? issue.path.map(String).join('.') : '(config)';
        return `${field} = ${formatValue(issue.input, { maxLength: 80 })}: ${issue.message}`;
      }),
    );
  }
  const c = result.data;
  const sparseBlocks = c.sparseBlocks === 'middle' ? [Math.floor(c.layers / 2)] : [...c.sparseBlocks].sort((a, b) => a - b);
  return { ...c, ffw: { ...c.ffw, hidden: c.ffw.hidden ?? 4 * c.dim }, sparseBlocks };
}

/** The FFW kind of each block: `ffw.kind` in the sparse blocks, 'dense' elsewhere (all 'dense' for a dense model). */
export function blockKinds(config: ModelConfig): ModelConfig['ffw']['kind'][] {
  return Array.from({ length: config.layers }, (_, i) =>
    config.ffw.kind !== 'dense' && config.sparseBlocks.includes(i) ? config.ffw.kind : 'dense',
  );
}
