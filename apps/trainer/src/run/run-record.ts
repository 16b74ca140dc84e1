// config.json of a run: the fully resolved config plus what it ran with (package versions, engine)
// and the numbers derived from the config (steps of a FLOP budget, FLOPs per step).
import type { JsonObject } from '../config/overrides.js';
import { validateConfig } from '../config/resolve.js';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { readJsonFile, type RunFolder } from './run-folder.js';

export interface RunRecord {
  /** Preset or config file name. */
  name: string;
  /** Where the config came from, e.g. `preset default` or `config file x.json`. */
  source: string;
  createdAt: string;
  config: TrainConfig;
  versions: Record<string, string>;
  backend: { requested: string; name: string; provider: string };
  derived: {
    steps: number;
    tokensPerStep: number;
    flopsPerToken: number;
    flopsPerStep: number;
    params: { total: number; activePerToken: number; embedding: number };
  };
  node: string;
}

/** The run's config.json, its config validated again (so a hand-edited file cannot smuggle in bad values). */
export function readRunRecord(run: RunFolder): RunRecord {
  const record = readJsonFile<RunRecord>(run.path('config'), 'run config');
  if (typeof record !== 'object' || record === null || typeof record.config !== 'object' || record.config === null) {
    throw new UsageError(`${run.path('config')} is not a peer-train run config (no "config" object)`);
  }
  return { ...record, config: validateConfig(record.config as unknown as JsonObject) };
}
