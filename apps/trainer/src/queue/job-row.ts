// A queued run's row of the table, from its BullMQ job (state, progress, tries).
import type { Job } from 'bullmq';
import type { RunJobProgress, RunJobResult } from './jobs.js';
import { RUN_ATTEMPTS } from './jobs.js';
import type { RunRow } from './run-table.js';

export type JobStateName = Awaited<ReturnType<Job['getState']>>;

/** The table's state of a job in BullMQ state `state`. */
export function rowState(state: JobStateName, job: Pick<Job, 'attemptsMade' | 'stalledCounter'>): string {
  switch (state) {
    case 'active':
      return 'running';
    case 'completed':
      return 'done';
    case 'failed':
      return 'failed';
    case 'delayed':
      return 'retrying';
    case 'unknown':
      return 'missing';
    default:
      return job.attemptsMade > 0 || job.stalledCounter > 0 ? 'retrying' : 'queued';
  }
}

function progressOf(job: Pick<Job, 'progress'>): RunJobProgress | undefined {
  const p = job.progress as Partial<RunJobProgress> | number | string | boolean | undefined;
  return p !== null && typeof p === 'object' && typeof p.step === 'number' ? (p as RunJobProgress) : undefined;
}

/** Tries, lost workers, the checkpoint continued from, a failure's reason. */
export function jobNote(state: JobStateName, job: Pick<Job, 'attemptsMade' | 'stalledCounter' | 'failedReason' | 'progress' | 'returnvalue'>): string {
  const notes: string[] = [];
  const tries = job.attemptsMade + (state === 'active' ? 1 : 0);
  if (tries > 1 || (state !== 'completed' && tries > 0)) notes.push(`try ${Math.max(tries, 1)} of ${RUN_ATTEMPTS}`);
  if (job.stalledCounter > 0) notes.push(`${job.stalledCounter} lost worker${job.stalledCounter > 1 ? 's' : ''}`);
  const resumedFrom = state === 'completed' ? (job.returnvalue as RunJobResult | undefined)?.resumedFrom : progressOf(job)?.resumedFrom;
  if (typeof resumedFrom === 'number' && resumedFrom > 0) notes.push(`resumed from step ${resumedFrom}`);
  if ((state === 'failed' || state === 'delayed' || notes.length > 0) && job.failedReason && state !== 'completed') notes.push(job.failedReason.split('\n')[0]!);
  return notes.join('; ');
}

export function jobRow(id: string, steps: number, state: JobStateName, job: Job): RunRow {
  const p = progressOf(job);
  const result = state === 'completed' ? (job.returnvalue as RunJobResult | undefined) : undefined;
  const showLive = state === 'active';
  return {
    id,
    state: rowState(state, job),
    worker: result?.worker ?? p?.worker ?? job.processedBy ?? null,
    step: result ? result.summary.steps : (p?.step ?? null),
    steps,
    loss: p?.loss ?? null,
    valLoss: result?.summary.val_loss ?? null,
    tokensPerSecond: result ? result.summary.tokens_per_s : (p?.tokensPerSecond ?? null),
    etaSeconds: showLive ? (p?.etaSeconds ?? null) : null,
    note: jobNote(state, job),
  };
}
