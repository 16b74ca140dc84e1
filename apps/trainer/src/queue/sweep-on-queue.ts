// `peer-train sweep --queue URL`: the planned runs go to the queue as jobs (id `<sweep key>/<run id>`:
// enqueueing again adds nothing, a finished run is never queued), workers train them, and this
// command follows them (a live table on a terminal, plain lines otherwise) until every run is done or
// failed. A finished run's summary.json comes back as its job's result and is written into the sweep
// folder when the workers' folders are elsewhere, so the tables and plots are those of a local sweep.
// Ctrl-C stops following only: the runs go on on the workers.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Queue, type Job } from 'bullmq';
import type { JsonObject } from '../config/overrides.js';
import { UsageError } from '../errors.js';
import { RUN_FILES, writeJsonAtomic } from '../run/run-folder.js';
import type { PlannedRun, SweepRecord } from '../sweep/plan.js';
import { isFinished, type RunOutcome } from '../sweep/run-sweep.js';
import { formatDuration } from '../train/progress.js';
import { jobRow, type JobStateName } from './job-row.js';
import { JOB_FORMAT, JOB_NAME, jobIdOf, QUEUE_NAME, RUN_ATTEMPTS, sweepKeyOf, SWEEPS_KEY, type RunJobData, type RunJobResult, type SweepEntry } from './jobs.js';
import { LiveTable } from './live-table.js';
import { redisOptions, type QueueUrl } from './redis-url.js';
import { renderRunTable, stateCounts, type RunRow } from './run-table.js';

export interface QueueSweepOptions {
  queue: QueueUrl;
  /** Status lines (the live table keeps them above itself). */
  log?: (line: string) => void;
  /** Where the table and lines go (default stderr). */
  stream?: NodeJS.WriteStream;
  /** Redraw a table (default: when the stream is a terminal). */
  tty?: boolean;
  /** How often the jobs are read (ms). */
  pollMs?: number;
}

/** Backoff between the tries of a failed run. */
const RETRY_DELAY_MS = 2000;
/** On a plain stream: a running run's progress line at most this often. */
const PLAIN_PROGRESS_MS = 30_000;
/** Lines of a failed run's log shown with its failure. */
const SHOWN_LOG_LINES = 10;

export function openQueue(q: QueueUrl, log: (line: string) => void): Queue {
  const queue = new Queue(QUEUE_NAME, { connection: redisOptions(q) });
  let last = '';
  queue.on('error', (err) => {
    const text = `queue error (${q.masked}): ${err.message}`;
    if (text !== last) log(text);
    last = text;
  });
  return queue;
}

function jobData(key: string, run: PlannedRun, config: JsonObject): RunJobData {
  return { format: JOB_FORMAT, version: 1, sweep: key, run, config };
}

async function addJob(queue: Queue, key: string, run: PlannedRun, config: JsonObject): Promise<void> {
  await queue.add(JOB_NAME, jobData(key, run, config), {
    jobId: jobIdOf(key, run.id),
    attempts: RUN_ATTEMPTS,
    backoff: { type: 'fixed', delay: RETRY_DELAY_MS },
    removeOnComplete: false,
    removeOnFail: false,
  });
}

/** Writes a finished run's summary (the job's result) into the sweep folder unless a shared run folder holds it already. */
function saveSummary(dir: string, run: PlannedRun, result: RunJobResult | undefined): boolean {
  if (isFinished(dir, run)) return true;
  if (!result?.summary) return false;
  const path = join(resolve(dir), run.dir, RUN_FILES.summary);
  mkdirSync(dirname(path), { recursive: true });
  writeJsonAtomic(path, result.summary);
  return true;
}

export async function runSweepOnQueue(
  dir: string,
  record: SweepRecord,
  configs: ReadonlyMap<string, JsonObject>,
  options: QueueSweepOptions,
): Promise<{ outcomes: RunOutcome[]; interrupted: boolean }> {
  const q = options.queue;
  const stream = options.stream ?? process.stderr;
  const table = new LiveTable(stream, options.tty ?? stream.isTTY === true);
  const log = (line: string) => (options.log ? options.log(line) : table.log(line));
  const pollMs = options.pollMs ?? 1000;
  const key = sweepKeyOf(dir);
  const runs = record.runs;
  const queue = openQueue(q, log);
  const outcomes = new Map<string, RunOutcome>();
  const rows = new Map<string, RunRow>(runs.map((r) => [r.id, { id: r.id, state: 'queued', worker: null, step: null, steps: r.steps, loss: null, valLoss: null, tokensPerSecond: null, etaSeconds: null, note: '' }]));
  let stopping = false;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) log(`${signal}: no longer following the sweep; its runs go on on the workers (rerun the same command to follow it and write the tables, or use --status)`);
    stopping = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const client = await queue.client;
    const entry: SweepEntry = { key, name: record.name, source: record.source, out: resolve(dir), host: hostname(), updatedAt: new Date().toISOString(), runs: runs.map((r) => ({ id: r.id, steps: r.steps })) };
    await client.hset(SWEEPS_KEY, { [key]: JSON.stringify(entry) });

    // 1. What the queue holds already: a job of another config under the same id is refused before anything is added.
    const existing = new Map<string, Job>();
    for (const run of runs) {
      if (isFinished(dir, run)) continue;
      const job = await queue.getJob(jobIdOf(key, run.id));
      if (!job) continue;
      const hash = (job.data as Partial<RunJobData> | undefined)?.run?.configHash;
      if (hash !== run.configHash) {
        throw new UsageError(`the queue at ${q.masked} holds run ${job.id} with another config than this sweep plans; choose another --out (the sweep folder's name names the sweep on the queue)`);
      }
      existing.set(run.id, job);
    }
    // 2. Enqueue what is neither finished nor queued; a run that failed before gets fresh tries.
    const pending: PlannedRun[] = [];
    for (const run of runs) {
      if (isFinished(dir, run)) {
        outcomes.set(run.id, { id: run.id, status: 'skipped', seconds: 0 });
        rows.set(run.id, { ...rows.get(run.id)!, state: 'finished', step: run.steps, note: 'finished before' });
        log(`skip  ${run.id}: finished (${join(run.dir, RUN_FILES.summary)})`);
        continue;
      }
      const job = existing.get(run.id);
      const state = job ? await job.getState() : undefined;
      if (job && state === 'failed') {
        log(`again ${run.id}: it failed before (${job.failedReason?.split('\n')[0] ?? '?'}); queued with ${RUN_ATTEMPTS} new tries`);
        await job.remove();
      }
      if (!job || state === 'failed') {
        await addJob(queue, key, run, configs.get(run.id)!);
        log(`queue ${run.id}: ${run.steps.toLocaleString('en-US')} steps (job ${jobIdOf(key, run.id)})`);
      } else {
        log(`queue ${run.id}: on the queue already (${state})`);
      }
      pending.push(run);
    }
    if (pending.length > 0) log(`sweep ${key}: ${pending.length} run(s) on ${q.masked}; workers take them: peer-train worker --queue URL [--runs-dir DIR]`);

    // 3. Follow the jobs until each is done or failed.
    const lastState = new Map<string, string>();
    const lastPlainProgress = new Map<string, number>();
    const draw = () => {
      const all = runs.map((r) => rows.get(r.id)!);
      table.render([...renderRunTable(all), stateCounts(all)]);
    };
    while (pending.length > 0 && !stopping) {
      for (const run of [...pending]) {
        const id = jobIdOf(key, run.id);
        const job = await queue.getJob(id);
        if (!job) {
          // removed from the queue behind our back (e.g. by an admin): put it back
          await addJob(queue, key, run, configs.get(run.id)!);
          log(`queue ${run.id}: its job had vanished from the queue; queued again`);
          continue;
        }
        const state: JobStateName = await job.getState();
        const row = jobRow(run.id, run.steps, state, job);
        rows.set(run.id, row);
        const previous = lastState.get(run.id);
        const change = `${row.state}|${row.worker}|${job.attemptsMade}|${job.stalledCounter}`;
        if (change !== previous) {
          lastState.set(run.id, change);
          lastPlainProgress.set(run.id, Date.now());
          if (row.state === 'running') log(`run   ${run.id} on ${row.worker ?? '?'}${row.note ? ` (${row.note})` : ''}`);
          else if (row.state === 'retrying') log(`retry ${run.id}: ${row.note || 'its worker was lost'}`);
        } else if (!table.tty && row.state === 'running' && row.step !== null) {
          const now = Date.now();
          if (now - (lastPlainProgress.get(run.id) ?? 0) >= PLAIN_PROGRESS_MS) {
            lastPlainProgress.set(run.id, now);
            log(`step  ${run.id}: ${row.step}/${run.steps}${row.loss === null ? '' : ` loss ${row.loss.toFixed(4)}`}${row.etaSeconds === null ? '' : ` eta ${formatDuration(row.etaSeconds)}`} on ${row.worker ?? '?'}`);
          }
        }
        if (state === 'completed') {
          const result = job.returnvalue as RunJobResult | undefined;
          if (!saveSummary(dir, run, result)) throw new Error(`job ${id} completed without a run summary`);
          outcomes.set(run.id, { id: run.id, status: 'done', seconds: result?.seconds ?? 0 });
          log(`done  ${run.id} on ${row.worker ?? '?'}: val_loss ${row.valLoss?.toFixed(4) ?? '?'}${row.note ? ` (${row.note})` : ''}`);
          pending.splice(pending.indexOf(run), 1);
        } else if (state === 'failed') {
          const { logs } = await queue.getJobLogs(id);
          const logPath = join(resolve(dir), run.log);
          // the workers' folders are elsewhere: keep the failed try's log in the sweep folder
          if (!existsSync(logPath) && logs.length > 0) writeFileSync(logPath, `${logs.join('\n')}\n`);
          const message = job.failedReason?.split('\n')[0] ?? 'failed';
          outcomes.set(run.id, { id: run.id, status: 'failed', seconds: 0, message });
          log(`FAIL  ${run.id} after ${job.attemptsMade} tr${job.attemptsMade === 1 ? 'y' : 'ies'}${job.stalledCounter > 0 ? ` and ${job.stalledCounter} lost worker(s)` : ''}: ${message}`);
          for (const line of logs.slice(-SHOWN_LOG_LINES)) log(`      | ${line}`);
          log(`      log: ${run.log}`);
          pending.splice(pending.indexOf(run), 1);
        }
      }
      draw();
      if (pending.length > 0 && !stopping) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, pollMs);
        });
      }
    }
    if (!table.tty) log(stateCounts(runs.map((r) => rows.get(r.id)!)));
  } finally {
    table.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await queue.close();
  }
  for (const run of runs) if (!outcomes.has(run.id)) outcomes.set(run.id, { id: run.id, status: 'queued', seconds: 0 });
  return { outcomes: runs.map((r) => outcomes.get(r.id)!), interrupted: stopping };
}
