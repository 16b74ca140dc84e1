// Opening a finished (or checkpointed) run for inference: eval, generate, and later usage/report.
import type { TransformerLM } from '@peer/model';
import { UsageError } from '../errors.js';
import { buildModel } from './build-model.js';
import { configHash, readCheckpoint, type TrainerState } from './checkpoint.js';
import { configToJson } from '../config/resolve.js';
import { readRunRecord, type RunRecord } from './run-record.js';
import { RunFolder } from './run-folder.js';
import { engineThreads } from './engine-threads.js';
import { startEngine } from './start-engine.js';

export interface LoadedRun {
  run: RunFolder;
  record: RunRecord;
  model: TransformerLM;
  /** The trainer state of the checkpoint the weights come from. */
  state: TrainerState;
  backend: string;
}

/** The run in `dir` with its checkpoint's weights; the caller disposes `model`. */
export async function loadRun(dir: string, options: { backend?: string; threads?: number; flag?: string } = {}): Promise<LoadedRun> {
  const run = RunFolder.open(dir, options.flag ?? '--run');
  const record = readRunRecord(run);
  if (!run.hasCheckpoint()) throw new UsageError(`${options.flag ?? '--run'} ${dir} has no checkpoint yet (the run has not saved one)`);
  const backend = await startEngine(options.backend ?? record.config.backend, engineThreads(options.threads, record.config.engine?.threads));
  const ckpt = readCheckpoint(run.checkpointDir, configHash(configToJson(record.config)));
  const model = buildModel(record.config);
  try {
    model.loadStateEntries(ckpt.get);
  } catch (err) {
    model.dispose();
    throw new UsageError(`the checkpoint in ${run.checkpointDir} does not fit this run's model: ${(err as Error).message}`);
  }
  return { run, record, model, state: ckpt.state, backend: backend.backend };
}
