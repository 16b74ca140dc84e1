// peer-train worker: trains the runs of queued sweeps (BullMQ on Redis), each in its own
// `peer-train train` process exactly as the local sweep does (same run folder, log and resume
// logic), in `<runs-dir>/<sweep key>/`, which is the sweep folder itself when --runs-dir is a shared
// folder holding it. Progress (step, loss, tokens/s, ETA) is the job's progress; the run's
// summary.json is its result.
//
// Faults: a failed training process fails the job (BullMQ retries it, RUN_ATTEMPTS in all); a worker
// that dies stops answering, BullMQ finds its job stalled after --stall-seconds and another worker
// takes it (the training itself stops with its worker, saving a checkpoint, see stop-with-parent.ts),
// resuming from the run's checkpoint when the run folder is reachable. Ctrl-C / SIGTERM: the
// trainings finish their step and checkpoint, the jobs go back to the queue, the worker exits 130.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { MANIFEST_FILE } from '@peer/expert-store';
import { configToJson, resolveConfig } from '../config/resolve.js';
import { UsageError } from '../errors.js';
import { configHash, TRAINER_STATE_KEY } from '../run/checkpoint.js';
import { processAlive, readJsonFile, RUN_FILES, writeJsonAtomic } from '../run/run-folder.js';
import type { RunSummary } from '../run/summary.js';
import { threadsPerJob } from '../run/engine-threads.js';
import { defaultCli, isFinished, runTrainProcess, trainArgs, withThreads, type TrainArgs } from '../sweep/run-sweep.js';
import { probeRedis } from '../queue/connect.js';
import { checkJobData, QUEUE_NAME, RUN_ATTEMPTS, workerName, type RunJobData, type RunJobProgress, type RunJobResult } from '../queue/jobs.js';
import { etaSeconds, MetricsFollower } from '../queue/metrics-follower.js';
import { parseQueueUrl, redisOptions } from '../queue/redis-url.js';
import { INTERRUPTED_EXIT_CODE } from './train.js';

export interface WorkerCommandOptions {
  queue: string;
  /** Where the sweeps' run folders go (default ./runs). */
  runsDir?: string;
  /** Runs trained at the same time (default 1). */
  concurrency?: number;
  /** Seconds after which the job of a worker that stopped answering is given to another (default 30). */
  stallSeconds?: number;
  /** The CLI to spawn for each run (default: this package's dist/cli.js). */
  cli?: string;
  log?: (line: string) => void;
}

/** Lines of a failed run's log kept with the job (the sweep command shows and saves them). */
const LOG_TAIL_LINES = 40;
const PROGRESS_MS = 1000;
/** How long a new try waits for a training of the same run on this machine to save its checkpoint and exit. */
const LOCK_WAIT_MS = 120_000;

/**
 * A try that follows a lost worker on the same machine may find that worker's training still
 * finishing its step and checkpoint (it holds the run's lock): wait for it rather than fail.
 */
async function waitForLock(runDir: string, log: (line: string) => void, id: string): Promise<void> {
  const path = join(runDir, RUN_FILES.lock);
  const t0 = Date.now();
  let said = false;
  while (existsSync(path) && Date.now() - t0 < LOCK_WAIT_MS) {
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid === process.pid || !processAlive(pid)) return;
    if (!said) log(`wait  ${id}: process ${pid} still holds the run (saving its checkpoint)`);
    said = true;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The step of the run's checkpoint, from its manifest (the training verifies the checkpoint itself). */
function checkpointStep(runDir: string): number | null {
  try {
    const manifest = JSON.parse(readFileSync(join(runDir, RUN_FILES.checkpoint, MANIFEST_FILE), 'utf8')) as { metadata?: Record<string, unknown> };
    const state = JSON.parse(String(manifest.metadata?.[TRAINER_STATE_KEY])) as { step?: unknown };
    return typeof state.step === 'number' ? state.step : null;
  } catch {
    return null;
  }
}

function logTail(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(-LOG_TAIL_LINES);
  } catch {
    return [];
  }
}

/** Writes the run's config file into the worker's copy of the sweep folder (unless it holds it already). */
function prepareFolder(dir: string, data: RunJobData): void {
  for (const sub of ['configs', 'runs', 'logs']) mkdirSync(join(dir, sub), { recursive: true });
  const path = join(dir, data.run.config);
  const text = `${JSON.stringify(data.config, null, 2)}\n`;
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) writeJsonAtomic(path, data.config);
}

export async function workerCommand(options: WorkerCommandOptions): Promise<number> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const concurrency = options.concurrency ?? 1;
  const stallSeconds = options.stallSeconds ?? 30;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError(`--concurrency must be an integer >= 1, got ${concurrency}`);
  if (!(stallSeconds >= 1)) throw new UsageError(`--stall-seconds must be >= 1, got ${stallSeconds}`);
  const q = parseQueueUrl(options.queue);
  const cli = options.cli ?? defaultCli();
  if (!existsSync(cli)) throw new UsageError(`${cli} is missing: build the trainer first (pnpm turbo run build --filter=@peer/trainer...)`, 1);
  const runsDir = resolve(options.runsDir ?? 'runs');
  mkdirSync(runsDir, { recursive: true });
  await probeRedis(q);

  const name = workerName();
  const children = new Set<ChildProcess>();
  let stopping = false;

  const processJob = async (job: Job, token?: string): Promise<RunJobResult> => {
    let data: RunJobData;
    try {
      data = checkJobData(job.data, job.id);
    } catch (err) {
      throw new UnrecoverableError((err as Error).message);
    }
    const { run } = data;
    const dir = join(runsDir, data.sweep);
    const runDir = join(dir, run.dir);
    let args: TrainArgs;
    try {
      prepareFolder(dir, data);
      const { config } = resolveConfig({ configFile: join(dir, run.config) });
      if (configHash(configToJson(config)) !== run.configHash) {
        throw new UsageError(`this worker (${name}) resolves the config of run ${run.id} differently than the sweep planned it: use the same peer-train version on every machine`);
      }
      if (isFinished(dir, run)) {
        // trained by an earlier try that was lost before it could report
        log(`done  ${run.id}: finished before (${join(run.dir, RUN_FILES.summary)})`);
        return { worker: name, summary: readJsonFile<RunSummary>(join(runDir, RUN_FILES.summary), 'run summary'), resumedFrom: null, seconds: 0 };
      }
      // a run folder of another config is the same mistake on every try
      // the runs trained at the same time share the cores, as the local sweep's --jobs do
      args = withThreads(trainArgs(dir, run, new Map([[run.id, config]])), threadsPerJob(concurrency));
    } catch (err) {
      if (err instanceof UsageError) throw new UnrecoverableError(err.message);
      throw err;
    }
    await waitForLock(runDir, log, run.id);
    const resumedFrom = args.resumed ? checkpointStep(runDir) : null;
    const lost = job.stalledCounter > 0 ? `, after ${job.stalledCounter} lost worker(s)` : '';
    const label = `(${data.sweep}, try ${job.attemptsMade + 1} of ${RUN_ATTEMPTS}${lost})`;

    const follower = new MetricsFollower(join(runDir, RUN_FILES.metrics));
    const t0 = Date.now();
    let firstStep: number | null = null;
    let progress: RunJobProgress = { worker: name, step: resumedFrom ?? 0, steps: run.steps, loss: null, tokensPerSecond: null, etaSeconds: null, resumedFrom };
    const report = async () => {
      const record = follower.poll();
      if (record) {
        const step = record.step;
        firstStep ??= resumedFrom ?? 0;
        progress = {
          ...progress,
          step,
          loss: typeof record.loss === 'number' ? record.loss : null,
          tokensPerSecond: typeof record.tokens_per_s === 'number' ? record.tokens_per_s : null,
          etaSeconds: etaSeconds(step, run.steps, firstStep, t0, Date.now()),
        };
      }
      await job.updateProgress(progress as unknown as object);
    };
    await report().catch(() => {});
    const timer = setInterval(() => void report().catch(() => {}), PROGRESS_MS);
    let outcome;
    try {
      outcome = await runTrainProcess(dir, run, args, {
        cli,
        log,
        label,
        stopWithParent: true,
        onSpawn: (child) => {
          children.add(child);
          if (stopping) child.kill('SIGINT');
        },
        onExit: (child) => children.delete(child),
      });
    } finally {
      clearInterval(timer);
    }
    const seconds = outcome.seconds;
    if (outcome.status === 'done') {
      await report().catch(() => {});
      return { worker: name, summary: readJsonFile<RunSummary>(join(runDir, RUN_FILES.summary), 'run summary'), resumedFrom, seconds };
    }
    if (outcome.status === 'interrupted' && stopping) {
      // handed back: the next worker continues from the checkpoint just saved
      await job.moveToWait(token);
      throw new WaitingError();
    }
    const logPath = join(dir, run.log);
    for (const line of logTail(logPath)) await job.log(line);
    throw new Error(`${outcome.status === 'interrupted' ? 'the training process was interrupted' : outcome.message} (log ${name} ${logPath})`);
  };

  const worker = new Worker(QUEUE_NAME, processJob, {
    connection: redisOptions(q),
    concurrency,
    name,
    autorun: false,
    lockDuration: stallSeconds * 1000,
    stalledInterval: stallSeconds * 1000,
    // the job of a worker lost RUN_ATTEMPTS times fails (as a training that failed that often does)
    maxStalledCount: RUN_ATTEMPTS - 1,
  });
  let lastError = '';
  worker.on('error', (err) => {
    // a Redis restart shows up here again and again: say each different problem once
    const text = `queue error (${q.masked}): ${err.message}`;
    if (text !== lastError) log(text);
    lastError = text;
  });
  worker.on('failed', (job, err) => {
    if (job && err.name !== 'WaitingError') {
      const final = job.attemptsMade >= RUN_ATTEMPTS || err.name === 'UnrecoverableError';
      log(`${final ? 'FAIL ' : 'retry'} ${job.id}: ${err.message}${final ? '' : ' (it goes back to the queue)'}`);
    }
  });

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // a second Ctrl-C: the trainings quit at once (their last checkpoint is intact)
      for (const child of children) child.kill('SIGINT');
      return;
    }
    stopping = true;
    log(`${signal}: stopping; the running trainings save a checkpoint and their runs go back to the queue`);
    for (const child of children) child.kill('SIGINT');
    void worker.close();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  log(`worker ${name}: taking runs from ${q.masked} (queue ${QUEUE_NAME}), ${concurrency} at a time, run folders in ${runsDir}`);
  try {
    await worker.run();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  log(`worker ${name}: stopped`);
  return stopping ? INTERRUPTED_EXIT_CODE : 0;
}
