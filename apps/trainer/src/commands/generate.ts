// peer-train generate: continue a prompt with a run's checkpoint (greedy at temperature 0).
import { createTokenizer, type TokenizerSpec } from '@peer/data';
import { UsageError } from '../errors.js';
import { loadRun } from '../run/load-run.js';

export interface GenerateCommandOptions {
  run: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK?: number;
  seed: number;
  backend?: string;
  /** Threads of the wasm engine (default: the run's engine.threads, else every core). */
  threads?: number;
}

export async function generateCommand(options: GenerateCommandOptions): Promise<string> {
  if (options.prompt.length === 0) throw new UsageError('--prompt must not be empty');
  const loaded = await loadRun(options.run, { backend: options.backend, threads: options.threads });
  try {
    const tokenizer = createTokenizer(loaded.record.config.data.tokenizer as TokenizerSpec);
    const prompt = Array.from(tokenizer.encode(options.prompt));
    const ids = await loaded.model.generateAsync(prompt, {
      maxNewTokens: options.maxTokens,
      temperature: options.temperature,
      topK: options.topK,
      seed: options.seed,
    });
    const text = tokenizer.decode(ids);
    process.stdout.write(`${options.prompt}${text}\n`);
    return text;
  } finally {
    loaded.model.dispose();
  }
}
