// peer-train eval: loss, perplexity and bits-per-byte of a run's checkpoint on a split of its corpus
// or of another one.
import type { SplitName } from '@peer/data';
import { UsageError } from '../errors.js';
import { loadRun } from '../run/load-run.js';
import { corpusOptions, openCorpus, openSplit } from '../run/open-data.js';
import { evaluate, type EvalResult } from '../train/evaluate.js';

export interface EvalCommandOptions {
  run: string;
  data?: string;
  textField?: string;
  split?: string;
  batches?: number;
  batchSize?: number;
  backend?: string;
  /** Threads of the wasm engine (default: the run's engine.threads, else every core). */
  threads?: number;
  json?: boolean;
  log?: (line: string) => void;
}

export type EvalSplit = SplitName | 'all';

export interface EvalReport extends EvalResult {
  run: string;
  step: number;
  corpus: string;
  split: EvalSplit;
  tokenizer: string;
}

export async function evalCommand(options: EvalCommandOptions): Promise<EvalReport> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // Another corpus is scored whole by default; the run's own corpus on its validation split.
  const split = (options.split ?? (options.data === undefined ? 'validation' : 'all')) as EvalSplit;
  if (!['train', 'validation', 'test', 'all'].includes(split)) throw new UsageError(`--split must be train, validation, test or all, got '${options.split}'`);
  if (options.data !== undefined) await openCorpus(options.data, corpusOptions({ textField: options.textField }));
  const loaded = await loadRun(options.run, { backend: options.backend, threads: options.threads });
  const { config } = loaded.record;
  try {
    const runData = options.textField === undefined ? config.data : { ...config.data, textField: options.textField };
    // 'all': one split holding every document
    const dataConfig = split === 'all' ? { ...runData, fractions: { train: 0, validation: 1, test: 0 } } : runData;
    const data = await openSplit(dataConfig, split === 'all' ? 'validation' : split, { corpus: options.data, log });
    try {
      const r = await evaluate(loaded.model, data.file, {
        batchSize: options.batchSize ?? config.data.batchSize,
        seqLen: config.data.seqLen,
        maxBatches: options.batches ?? 0,
        tokenizer: data.tokenizer,
        vocabSize: config.model.vocabSize,
      });
      const report: EvalReport = { run: loaded.run.dir, step: loaded.state.step, corpus: options.data ?? config.data.corpus, split, tokenizer: config.data.tokenizer, ...r };
      if (options.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else {
        process.stdout.write(
          `${report.corpus} ${split} (${r.tokens.toLocaleString('en-US')} tokens, ${r.bytes.toLocaleString('en-US')} bytes) at step ${report.step}: ` +
            `loss ${r.loss.toFixed(4)} | perplexity ${r.perplexity.toFixed(3)} | bits/byte ${r.bitsPerByte.toFixed(4)}\n`,
        );
      }
      return report;
    } finally {
      data.file.close();
    }
  } finally {
    loaded.model.dispose();
  }
}
