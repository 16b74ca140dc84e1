// The one training configuration. Every field has a default here (nanoGPT style: read this file to
// know what a run does); presets (apps/trainer/presets/*.json) and `--set` override fields. Unknown
// keys fail validation, so a typo never silently falls back to a default.
import { z } from 'zod';
import { BACKEND_NAMES, type BackendRequest } from '@peer/backend';
import { ModelConfigSchema, type ModelConfig } from '@peer/model';

export const DataConfig = z.strictObject({
  // A built-in corpus (sotu, moby-dick) or a path: a .txt/.md file, a .jsonl file, a .parquet file
  // (each also as .gz, except Parquet; .json.gz is JSONL, as C4's shards), a folder (text files and
  // shards), or a glob of shards ('c4/en/c4-train.0000*-of-01024.json.gz').
  corpus: z.string().min(1).default('sotu'),
  // The JSONL field or Parquet column holding the document text; omitted = 'text'. Optional (not
  // defaulted) so that configs written before it existed keep their hash and resume.
  textField: z.string().min(1).optional(),
  // byte (256 ids, one per UTF-8 byte) or a BPE vocabulary: gpt2, p50k, cl100k, o200k.
  tokenizer: z.string().min(1).default('byte'),
  // Sequences per optimizer step.
  batchSize: z.int().positive().default(16),
  // Tokens per training sequence; omitted = model.seqLen. At most model.seqLen.
  seqLen: z.int().positive().optional(),
  // Document-level split of the corpus (fractions sum to 1).
  fractions: z
    .strictObject({ train: z.number().min(0).max(1), validation: z.number().min(0).max(1), test: z.number().min(0).max(1) })
    .default({ train: 0.9, validation: 0.05, test: 0.05 }),
  // Seed of the document split: independent of train.seed so that every run sees the same validation set.
  splitSeed: z.int().default(0),
  // Tokenized corpora are cached here (relative paths are relative to the working directory).
  cacheDir: z.string().min(1).default('.cache/peer'),
});

export const OptimConfig = z.strictObject({
  // Peak AdamW learning rate of the dense parameters.
  lr: z.number().positive().default(1e-3),
  // Learning rate at the last step (end of the cosine).
  minLr: z.number().nonnegative().default(1e-4),
  // Linear warmup steps before the cosine decay.
  warmupSteps: z.int().nonnegative().default(100),
  // 'cosine' (warmup, then cosine to minLr) or 'constant' (warmup, then lr).
  schedule: z.enum(['cosine', 'constant']).default('cosine'),
  // Decoupled weight decay, applied to matrices only (not to norms and biases).
  weightDecay: z.number().nonnegative().default(0.1),
  beta1: z.number().min(0).max(1).default(0.9),
  beta2: z.number().min(0).max(1).default(0.95),
  eps: z.number().positive().default(1e-8),
  // Clip the global norm of the dense gradients to this value (0 = no clipping).
  gradClip: z.number().nonnegative().default(1),
  // Learning rate of the sparse expert / memory tables (PKM practice: its own constant 1e-3).
  sparseLr: z.number().positive().default(1e-3),
  // Row-sparse optimizer of those tables.
  sparseOptimizer: z.enum(['adam', 'sgd']).default('adam'),
  // 'constant' keeps sparseLr; 'schedule' scales it by the dense schedule's lr / optim.lr.
  sparseSchedule: z.enum(['constant', 'schedule']).default('constant'),
});

export const TrainLoopConfig = z.strictObject({
  // Optimizer steps; exactly one of steps and flops.
  steps: z.int().positive().optional(),
  // Compute budget in FLOPs: steps = floor(flops / (3 * flopsPerToken * tokensPerStep)).
  flops: z.number().positive().optional(),
  // Evaluate on evalBatches validation batches every this many steps (0 = only at the end).
  evalEvery: z.int().nonnegative().default(200),
  // Validation batches per periodic evaluation (0 = the whole split).
  evalBatches: z.int().nonnegative().default(16),
  // Validation batches of the final evaluation in summary.json (0 = the whole split).
  finalEvalBatches: z.int().nonnegative().default(0),
  // Write a metrics line (and a progress line off-terminal) every this many steps.
  logEvery: z.int().positive().default(10),
  // Save a checkpoint every this many steps (0 = only at the end). The last one is always kept.
  checkpointEvery: z.int().nonnegative().default(200),
  // Seed of the batch order and dropout. `--seed` sets this and model.seed.
  seed: z.int().default(1337),
});

export const TrainConfigSchema = z
  .strictObject({
    // The transformer (see @peer/model's ModelConfigSchema). vocabSize defaults to the tokenizer's.
    model: ModelConfigSchema,
    data: DataConfig.prefault({}),
    optim: OptimConfig.prefault({}),
    train: TrainLoopConfig.prefault({}),
    // tfjs engine: auto (tensorflow if installed, else wasm), tensorflow, wasm, cpu.
    backend: z.enum(BACKEND_NAMES as [BackendRequest, ...BackendRequest[]]).default('auto'),
    // How the engine runs, not what is trained: absent by default, so that configs (and their hashes)
    // stay as they were. threads: the wasm engine's threads (default every core; `--threads` wins).
    engine: z.strictObject({ threads: z.int().positive().optional() }).optional(),
  })
  .superRefine((c, ctx) => {
    const hasSteps = c.train.steps !== undefined;
    const hasFlops = c.train.flops !== undefined;
    if (hasSteps === hasFlops) {
      ctx.addIssue({
        code: 'custom',
        path: ['train', hasSteps ? 'flops' : 'steps'],
        input: hasSteps ? c.train.flops : undefined,
        message: hasSteps ? 'set train.steps or train.flops, not both (--steps and --flops replace each other)' : 'set train.steps or train.flops',
      });
    }
    const seqLen = c.data.seqLen ?? c.model.seqLen;
    if (seqLen > c.model.seqLen) {
      ctx.addIssue({ code: 'custom', path: ['data', 'seqLen'], message: `must be at most model.seqLen (${c.model.seqLen})`, input: seqLen });
    }
    const f = c.data.fractions;
    if (Math.abs(f.train + f.validation + f.test - 1) > 1e-9) {
      ctx.addIssue({ code: 'custom', path: ['data', 'fractions'], message: 'train + validation + test must sum to 1', input: f });
    }
    if (f.train === 0 || f.validation === 0) {
      ctx.addIssue({ code: 'custom', path: ['data', 'fractions'], message: 'train and validation fractions must be above 0', input: f });
    }
    if (c.optim.minLr > c.optim.lr) {
      ctx.addIssue({ code: 'custom', path: ['optim', 'minLr'], message: `must be at most optim.lr (${c.optim.lr})`, input: c.optim.minLr });
    }
  });

export type TrainConfigInput = z.input<typeof TrainConfigSchema>;
/** A validated config with every default filled in (data.seqLen included, see resolveConfig). */
export type TrainConfig = Omit<z.output<typeof TrainConfigSchema>, 'model' | 'data'> & {
  model: ModelConfig;
  data: z.output<typeof DataConfig> & { seqLen: number };
};
