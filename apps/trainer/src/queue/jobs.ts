// What goes through the queue: one BullMQ job per training run of a sweep, on the one queue every
// worker listens to. Its id is `<sweep key>/<run id>` (the sweep key is the sweep folder's name), so
// enqueueing a sweep again adds nothing. The job carries the run's plan and config file, so a worker
// needs no access to the sweep folder; its progress and result are the shapes below.
import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import type { JsonObject } from '../config/overrides.js';
import { UsageError } from '../errors.js';
import type { RunSummary } from '../run/summary.js';
import type { PlannedRun } from '../sweep/plan.js';

/** The BullMQ queue of every peer-train sweep and worker. */
export const QUEUE_NAME = 'peer-train';
/** Redis hash: sweep key -> SweepEntry (JSON), for `sweep --status` from any machine. */
export const SWEEPS_KEY = 'peer-train:sweeps';
/** Tries of a run: a failed training process is retried, so is a run whose worker was lost. */
export const RUN_ATTEMPTS = 3;
export const JOB_NAME = 'train';
export const JOB_FORMAT = 'peer-train-run';

export interface RunJobData {
  format: typeof JOB_FORMAT;
  version: 1;
  /** The sweep key: the sweep folder's name; a worker trains the run in `<runs-dir>/<sweep>/<run.dir>`. */
  sweep: string;
  run: PlannedRun;
  /** The run's config file (configs/<id>.json of the sweep folder). */
  config: JsonObject;
}

export interface RunJobProgress {
  /** `host:pid` of the worker process. */
  worker: string;
  step: number;
  steps: number;
  loss: number | null;
  tokensPerSecond: number | null;
  etaSeconds: number | null;
  /** The checkpoint step this try continued from (null: from step 0). */
  resumedFrom: number | null;
}

export interface RunJobResult {
  worker: string;
  summary: RunSummary;
  resumedFrom: number | null;
  /** Seconds of the last try (the run's training time over all tries is summary.wall_seconds). */
  seconds: number;
}

/** What `sweep --status` shows about a sweep; written by the sweep command. */
export interface SweepEntry {
  key: string;
  name: string;
  source: string;
  /** The sweep folder on the machine that started the sweep. */
  out: string;
  host: string;
  updatedAt: string;
  runs: { id: string; steps: number }[];
}

const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The sweep key of the sweep folder `dir`: its name, which becomes a folder of every worker's --runs-dir. */
export function sweepKeyOf(dir: string): string {
  const key = basename(resolve(dir));
  if (!KEY_PATTERN.test(key)) {
    throw new UsageError(`--out ${dir}: with --queue the sweep folder's name must be letters, digits, '.', '_' or '-' (it names the sweep on the queue and on the workers), got '${key}'`);
  }
  return key;
}

export function jobIdOf(sweepKey: string, runId: string): string {
  // BullMQ refuses ':' in job ids
  if (runId.includes(':')) throw new UsageError(`sweep run ${runId}: a run id cannot contain ':' with --queue; rename its method or size`);
  return `${sweepKey}/${runId}`;
}

export function workerName(): string {
  return `${hostname()}:${process.pid}`;
}

/** The job's data, checked (a job some other program put on the queue is refused by name). */
export function checkJobData(data: unknown, jobId: string | undefined): RunJobData {
  const d = data as Partial<RunJobData> | null;
  const run = d?.run as Partial<PlannedRun> | undefined;
  const ok =
    d !== null &&
    typeof d === 'object' &&
    d.format === JOB_FORMAT &&
    d.version === 1 &&
    typeof d.sweep === 'string' &&
    KEY_PATTERN.test(d.sweep) &&
    typeof d.config === 'object' &&
    d.config !== null &&
    typeof run?.id === 'string' &&
    typeof run.dir === 'string' &&
    typeof run.config === 'string' &&
    typeof run.log === 'string' &&
    typeof run.configHash === 'string' &&
    typeof run.steps === 'number' &&
    // the paths stay inside the sweep folder
    [run.dir, run.config, run.log].every((p) => !p.startsWith('/') && !p.split(/[\\/]/).includes('..'));
  if (!ok) throw new UsageError(`job ${jobId ?? '?'} on queue ${QUEUE_NAME} is not a peer-train run (format ${JOB_FORMAT} version 1)`);
  return d as RunJobData;
}
