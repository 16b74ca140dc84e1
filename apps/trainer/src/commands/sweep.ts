// peer-train sweep: an isoFLOP experiment. For each compute budget, method and model size of the sweep
// config: plan the run (steps = floor(budget / FLOPs per step)), train it in its own process (final
// evaluation included), then write summary.csv, summary.md, the isoFLOP plot and report.html.
// Rerunning the same command continues an interrupted sweep: finished runs are skipped, unfinished
// ones resume from their last checkpoint. With --queue the runs are trained by `peer-train worker`s
// on other machines instead (src/queue/), and the outputs are the same. With --extend the folder's sweep
// takes a new config whose plan keeps every run it has (sizes, methods, seeds or budgets added).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { writeSweepOutputs, type SweepOutputs } from '../report/sweep-report.js';
import { assertExtends, assertSameSweep, checkSweepFolder, extensionProblem, planSweep, sweepConfigDiff, writeSweepFolder, type PlannedRun } from '../sweep/plan.js';
import { checkRunFolders, executeSweep, isFinished, type RunOutcome } from '../sweep/run-sweep.js';
import { loadSweep } from '../sweep/sweep-config.js';
import { probeRedis } from '../queue/connect.js';
import { sweepKeyOf } from '../queue/jobs.js';
import { parseQueueUrl } from '../queue/redis-url.js';
import { runSweepOnQueue } from '../queue/sweep-on-queue.js';
import { formatCount } from '../train/flops.js';

export interface SweepCommandOptions {
  preset?: string;
  config?: string;
  /** Sweep folder (default runs/sweep-<name>). */
  out?: string;
  backend?: string;
  /** Runs trained at the same time (default 1). */
  jobs?: number;
  /** Threads of each run's engine (default: the machine's cores divided by --jobs). */
  threads?: number;
  /** Print the plan and stop. */
  dryRun?: boolean;
  /** Accept a sweep config that differs from the folder's when its plan keeps every run of the folder unchanged. */
  extend?: boolean;
  /** The CLI to spawn for each run (default: this package's dist/cli.js). */
  cli?: string;
  /** Redis URL: the runs go to this queue, for `peer-train worker`s to train. */
  queue?: string;
  log?: (line: string) => void;
  /** Where the final table goes (default stdout). */
  print?: (text: string) => void;
}

export interface SweepResult {
  dir: string;
  runs: PlannedRun[];
  outcomes: RunOutcome[];
  interrupted: boolean;
  outputs?: SweepOutputs;
}

/** `previous`: the ids of the runs of the sweep being extended (the others are marked new). */
function planTable(dir: string, runs: readonly PlannedRun[], previous?: ReadonlySet<string>): string {
  const header = ['run', 'params', 'active', 'FLOPs/token', 'steps', 'tokens', 'state'];
  const rows = runs.map((r) => [
    r.id,
    formatCount(r.paramsTotal),
    formatCount(r.paramsActive),
    formatCount(r.flopsPerToken),
    r.steps.toLocaleString('en-US'),
    formatCount(r.steps * r.tokensPerStep),
    isFinished(dir, r) ? 'finished' : previous && !previous.has(r.id) ? 'new' : '',
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === 0 || c === 6 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export async function sweepCommand(options: SweepCommandOptions): Promise<SweepResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  if (options.jobs !== undefined && (!Number.isInteger(options.jobs) || options.jobs < 1)) throw new UsageError(`--jobs must be an integer >= 1, got ${options.jobs}`);
  const loaded = loadSweep({ preset: options.preset, config: options.config });
  const dir = resolve(options.out ?? join('runs', `sweep-${loaded.name}`));
  const existing = checkSweepFolder(dir);
  if (existing && !options.extend && sweepConfigDiff(existing, loaded).length > 0) {
    // the refusal says whether --extend would accept this config, which takes planning it
    let extendable = false;
    try {
      extendable = extensionProblem(dir, existing, await planSweep(loaded, { backend: options.backend })) === undefined;
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
    }
    assertSameSweep(dir, existing, loaded, extendable);
  }
  const queueUrl = options.queue === undefined ? undefined : parseQueueUrl(options.queue);
  if (queueUrl) {
    sweepKeyOf(dir);
    await probeRedis(queueUrl);
  }
  const plan = await planSweep(loaded, { backend: options.backend });
  if (existing && options.extend) assertExtends(dir, existing, plan);
  if (existing) checkRunFolders(dir, plan.runs, plan.resolved);
  const previous = existing && options.extend ? new Set(existing.runs.map((r) => r.id)) : undefined;
  const added = previous ? plan.runs.filter((r) => !previous.has(r.id)).length : 0;
  const { sweep } = loaded;
  log(
    `sweep ${loaded.name} (${loaded.source}): ${sweep.budgets.length} budget(s) x ${Object.keys(sweep.methods).length} method(s) x ` +
      `${sweep.sizes.length} size(s) = ${plan.runs.length} runs in ${dir}${existing ? (added > 0 ? ` (extending: ${added} new run(s))` : ' (continuing)') : ''}`,
  );
  log(planTable(dir, plan.runs, previous));
  if (options.dryRun) return { dir, runs: plan.runs, outcomes: [], interrupted: false };

  const record = writeSweepFolder(dir, loaded, plan, existing, { extend: options.extend });
  const { outcomes, interrupted } = queueUrl
    ? await runSweepOnQueue(dir, record, plan.configs, { queue: queueUrl, ...(options.log ? { log } : {}) })
    : await executeSweep(dir, plan.runs, { jobs: options.jobs, threads: options.threads, log, cli: options.cli, planned: plan.resolved });
  const outputs = await writeSweepOutputs(dir, new Map(outcomes.map((o) => [o.id, o.status])), record);
  print(readFileSync(outputs.mdPath, 'utf8'));
  print(`table: ${outputs.csvPath} | plot: ${outputs.plots[0]!.pngPath} | report: ${outputs.htmlPath}\n`);
  const failed = outcomes.filter((o) => o.status === 'failed');
  if (interrupted) {
    log(`sweep interrupted: rerun the same command (with --out ${dir}) to continue`);
  } else if (failed.length > 0) {
    throw new UsageError(
      `${failed.length} of ${outcomes.length} sweep runs failed (${failed.map((f) => f.id).join(', ')}); see their logs in ${join(dir, 'logs')}`,
      1,
    );
  }
  return { dir, runs: plan.runs, outcomes, interrupted, outputs };
}
