// peer-train report DIR: report.html for a run folder (loss curves, learning rate, throughput, expert
// usage, summary, config) or for a sweep folder (the results table and the isoFLOP plot), with the
// plots as SVG and PNG files next to it.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { notAReportFolder, writeRunReport, type ReportResult } from '../report/run-report.js';
import { writeSweepOutputs } from '../report/sweep-report.js';
import { SWEEP_FILE } from '../sweep/plan.js';
import { RUN_FILES } from '../run/run-folder.js';

export interface ReportCommandOptions {
  /** false: do not measure expert usage, only include an existing usage.json. */
  usage?: boolean;
  usageBatches?: number;
  backend?: string;
  /** Threads of the wasm engine (default: the run's engine.threads, else every core). */
  threads?: number;
  log?: (line: string) => void;
}

export async function reportCommand(dir: string, options: ReportCommandOptions = {}): Promise<ReportResult & { kind: 'run' | 'sweep' }> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new UsageError(`report ${dir}: no such folder`);
  if (!statSync(abs).isDirectory()) throw new UsageError(`report ${dir}: not a folder`);
  let result: ReportResult & { kind: 'run' | 'sweep' };
  if (existsSync(join(abs, SWEEP_FILE))) {
    result = { kind: 'sweep', ...(await writeSweepOutputs(abs)) };
  } else if (existsSync(join(abs, RUN_FILES.config))) {
    result = { kind: 'run', ...(await writeRunReport(abs, { computeUsage: options.usage ?? true, usageBatches: options.usageBatches, backend: options.backend, threads: options.threads, log })) };
  } else {
    throw notAReportFolder(dir);
  }
  process.stdout.write(`report: ${result.htmlPath}\n`);
  process.stdout.write(`plots: ${result.plots.map((p) => p.pngPath).join(', ')} (and .svg)\n`);
  return result;
}
