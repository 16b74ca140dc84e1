// Running a sweep's training runs, each in its own `peer-train train` process: a run cannot disturb
// another (the wasm heap never shrinks, kernels and engines are process-global), a crash or a
// non-finite loss stops that run only, and every run is resumable on its own. A run folder with a
// summary.json is finished and skipped; one without is continued with `train --resume` (from its last
// checkpoint, or from step 0), so a sweep that was interrupted or killed picks up where it stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { configHash } from '../run/checkpoint.js';
import { threadsPerJob } from '../run/engine-threads.js';
import { configToJson, resolveConfig } from '../config/resolve.js';
import { diffPaths } from '../config/overrides.js';
import { trainerRoot } from '../config/presets.js';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { readRunRecord } from '../run/run-record.js';
import { RUN_FILES, RunFolder } from '../run/run-folder.js';
import { STOP_WITH_PARENT_ENV } from '../run/stop-with-parent.js';
import { formatDuration } from '../train/progress.js';
import type { PlannedRun } from './plan.js';

/** `queued`: waiting or training on a queue's workers (a sweep with --queue). */
export type RunStatus = 'skipped' | 'done' | 'failed' | 'interrupted' | 'not run' | 'queued';

export interface RunOutcome {
  id: string;
  status: RunStatus;
  seconds: number;
  /** Why a run failed: the last line its process printed. */
  message?: string;
}

export interface ExecuteOptions {
  /** Runs trained at the same time (default 1). */
  jobs?: number;
  /** Threads of each run's engine (default: the machine's cores divided by `jobs`). */
  threads?: number;
  /** Status lines. */
  log: (line: string) => void;
  /** The CLI to spawn (default: this package's dist/cli.js). */
  cli?: string;
  /** Extra environment of the child processes. */
  env?: Record<string, string>;
  /** The runs' planned configs (names the differing keys when a run folder does not match). */
  planned?: PlannedConfigs;
}

/** The built CLI of this package. */
export function defaultCli(): string {
  return join(trainerRoot(), 'dist', 'cli.js');
}

/** Whether run `run` of the sweep in `dir` is finished (it has a summary). */
export function isFinished(dir: string, run: PlannedRun): boolean {
  return existsSync(join(resolve(dir), run.dir, RUN_FILES.summary));
}

/** A run's planned config (from the plan, else from its config file). */
export type PlannedConfigs = ReadonlyMap<string, TrainConfig>;

/**
 * Where `started` (the config a run was started or planned with) differs from the config this sweep
 * plans for `run`: [] when they are the same.
 */
export function plannedConfigDiff(dir: string, run: PlannedRun, started: TrainConfig, planned?: PlannedConfigs): string[] {
  if (configHash(configToJson(started)) === run.configHash) return [];
  const plannedConfig = planned?.get(run.id) ?? resolveConfig({ configFile: join(resolve(dir), run.config) }).config;
  const diff = diffPaths(configToJson(started), configToJson(plannedConfig));
  return diff.length > 0 ? diff : ['its hash'];
}

/** The config run folder `runDir` was started with, or undefined when it has none yet. */
export function startedRunConfig(runDir: string, runId: string): TrainConfig | undefined {
  if (!existsSync(join(runDir, RUN_FILES.config))) return undefined;
  return readRunRecord(RunFolder.open(runDir, `sweep run ${runId}:`)).config;
}

/** Refuses a run folder that was started with another config than the one this sweep plans for it. */
function checkSameConfig(dir: string, run: PlannedRun, planned?: PlannedConfigs): void {
  const runDir = join(resolve(dir), run.dir);
  const diff = plannedConfigDiff(dir, run, readRunRecord(RunFolder.open(runDir, `sweep run ${run.id}:`)).config, planned);
  if (diff.length === 0) return;
  throw new UsageError(
    `sweep run ${run.id}: ${runDir} was started with a different config than this sweep plans ` +
      `(differs at ${diff.slice(0, 3).join(', ')}${diff.length > 3 ? ', ...' : ''}); move it away or choose another --out`,
  );
}

/** Checks every run folder that already exists (a restarted sweep) against the plan. */
export function checkRunFolders(dir: string, runs: readonly PlannedRun[], planned?: PlannedConfigs): void {
  for (const run of runs) if (existsSync(join(resolve(dir), run.dir, RUN_FILES.config))) checkSameConfig(dir, run, planned);
}

/** How a run's process is started: a new run, or the continuation of its existing folder. */
export interface TrainArgs {
  args: string[];
  resumed: boolean;
}

/** The run's command line with the wasm engine's thread count of one job (jobs share the cores). */
export function withThreads(plan: TrainArgs, threads: number): TrainArgs {
  return { ...plan, args: [...plan.args, '--threads', String(threads)] };
}

/**
 * The train arguments of an unfinished run: a new run, or the continuation of an existing folder
 * (after checking that it was started with the same config).
 */
export function trainArgs(dir: string, run: PlannedRun, planned?: PlannedConfigs): TrainArgs {
  const runDir = join(resolve(dir), run.dir);
  if (existsSync(join(runDir, RUN_FILES.config))) {
    checkSameConfig(dir, run, planned);
    return { args: ['train', '--resume', runDir], resumed: true };
  }
  if (existsSync(runDir) && readdirSync(runDir).length > 0) {
    // a folder the train command created but had not written config.json into yet: nothing to keep
    rmSync(runDir, { recursive: true, force: true });
  }
  return { args: ['train', '--config', join(resolve(dir), run.config), '--out', runDir], resumed: false };
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? '';
}

/**
 * Trains every unfinished run of `runs` (in order, `jobs` at a time). SIGINT / SIGTERM stop the
 * sweep: the running trainings get one SIGINT (they save a checkpoint and exit), no new run starts.
 */
export async function executeSweep(dir: string, runs: readonly PlannedRun[], options: ExecuteOptions): Promise<{ outcomes: RunOutcome[]; interrupted: boolean }> {
  const cli = options.cli ?? defaultCli();
  if (!existsSync(cli)) throw new UsageError(`${cli} is missing: build the trainer first (pnpm turbo run build --filter=@peer/trainer...)`, 1);
  const jobs = Math.max(1, options.jobs ?? 1);
  // The runs share the machine's cores instead of each taking all of them.
  const threads = options.threads ?? threadsPerJob(jobs);
  const outcomes = new Map<string, RunOutcome>();
  const todo: PlannedRun[] = [];
  // a finished run counts only if it is the run this sweep plans (a preset it extends may have changed)
  checkRunFolders(dir, runs, options.planned);
  for (const run of runs) {
    if (isFinished(dir, run)) {
      outcomes.set(run.id, { id: run.id, status: 'skipped', seconds: 0 });
      options.log(`skip  ${run.id}: finished (${join(run.dir, RUN_FILES.summary)})`);
    } else todo.push(run);
  }
  // check every unfinished folder before starting anything
  const argsOf = new Map(todo.map((run) => [run.id, trainArgs(dir, run, options.planned)]));

  const children = new Set<ChildProcess>();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) options.log(`${signal}: stopping the sweep; the running trainings save a checkpoint (rerun the same command to continue)`);
    stopping = true;
    // the children run in their own process groups: a terminal's Ctrl-C reaches only this process
    for (const child of children) child.kill('SIGINT');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const runOne = (run: PlannedRun, index: number): Promise<RunOutcome> =>
    runTrainProcess(dir, run, withThreads(argsOf.get(run.id)!, threads), {
      cli,
      env: options.env,
      log: options.log,
      label: `[${index + 1}/${todo.length}]`,
      onSpawn: (child) => children.add(child),
      onExit: (child) => children.delete(child),
    });

  try {
    let next = 0;
    const worker = async () => {
      while (!stopping && next < todo.length) {
        const index = next++;
        const run = todo[index]!;
        outcomes.set(run.id, await runOne(run, index));
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, todo.length) }, worker));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  for (const run of runs) if (!outcomes.has(run.id)) outcomes.set(run.id, { id: run.id, status: 'not run', seconds: 0 });
  return { outcomes: runs.map((r) => outcomes.get(r.id)!), interrupted: stopping };
}

export interface RunProcessOptions {
  /** The CLI to spawn. */
  cli: string;
  /** Extra environment of the child process. */
  env?: Record<string, string>;
  /** Status lines. */
  log: (line: string) => void;
  /** Shown after the run id in the start line, e.g. `[2/4]`. */
  label?: string;
  /**
   * The child saves a checkpoint and exits when this process dies (its end of an IPC channel
   * closes): a queue worker's job is then retried elsewhere and must not be trained twice.
   */
  stopWithParent?: boolean;
  onSpawn?: (child: ChildProcess) => void;
  onExit?: (child: ChildProcess) => void;
}

/**
 * Trains one run in its own `peer-train train` process (its own process group, so that a terminal's
 * Ctrl-C reaches only the caller, which decides whom to stop), output appended to the run's log.
 */
export function runTrainProcess(dir: string, run: PlannedRun, plan: TrainArgs, o: RunProcessOptions): Promise<RunOutcome> {
  return new Promise((resolveRun) => {
    const { args, resumed } = plan;
    const logPath = join(resolve(dir), run.log);
    const fd = openSync(logPath, 'a');
    writeSync(fd, `\n# ${new Date().toISOString()} peer-train ${args.join(' ')}\n`);
    o.log(`start ${run.id}${o.label ? ` ${o.label}` : ''}: ${resumed ? 'resuming, ' : ''}${run.steps.toLocaleString('en-US')} steps; log ${run.log}`);
    const t0 = performance.now();
    const child = spawn(process.execPath, [o.cli, ...args], {
      stdio: o.stopWithParent ? ['ignore', fd, fd, 'ipc'] : ['ignore', fd, fd],
      detached: true,
      env: { ...process.env, ...o.env, ...(o.stopWithParent ? { [STOP_WITH_PARENT_ENV]: '1' } : {}) },
    });
    o.onSpawn?.(child);
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (finished) return;
      finished = true;
      o.onExit?.(child);
      closeSync(fd);
      const seconds = (performance.now() - t0) / 1000;
      let tail = error?.message ?? '';
      if (!error) {
        try {
          tail = lastLine(readFileSync(logPath, 'utf8').slice(-4000));
        } catch {
          // no log to quote
        }
      }
      let outcome: RunOutcome;
      if (code === 0 && isFinished(dir, run)) outcome = { id: run.id, status: 'done', seconds };
      else if (code === 130 || signal === 'SIGINT' || signal === 'SIGTERM') outcome = { id: run.id, status: 'interrupted', seconds };
      else outcome = { id: run.id, status: 'failed', seconds, message: tail || `exit code ${code ?? signal}` };
      o.log(
        outcome.status === 'done'
          ? `done  ${run.id} in ${formatDuration(seconds)}`
          : outcome.status === 'interrupted'
            ? `stop  ${run.id}: interrupted after ${formatDuration(seconds)} (checkpoint saved)`
            : `FAIL  ${run.id} after ${formatDuration(seconds)}: ${outcome.message} (see ${run.log})`,
      );
      resolveRun(outcome);
    };
    child.on('error', (err) => finish(null, null, err));
    child.on('exit', (code, signal) => finish(code, signal));
  });
}
