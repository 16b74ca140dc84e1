// The run folder: everything one training run writes, and the only place that knows its layout.
//
//   <run>/config.json     fully resolved config + package versions + backend (written once)
//   <run>/metrics.jsonl   one JSON object per logged step ({"kind":"train"|"eval"|"health", "step", ...})
//   <run>/tb/             TensorBoard event files of the same metrics (one file per training process)
//   <run>/checkpoint/     the last complete checkpoint (see checkpoint.ts)
//   <run>/summary.json    written when training finishes
//   <run>/train.lock      the pid of the process training the run, while it runs
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

export const RUN_FILES = {
  config: 'config.json',
  metrics: 'metrics.jsonl',
  checkpoint: 'checkpoint',
  summary: 'summary.json',
  tensorboard: 'tb',
  /** Holds the pid of the process training the run; a stale one (dead pid) is taken over. */
  lock: 'train.lock',
} as const;

/** Whether a process with this pid exists on this machine (one we may not signal counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes JSON to `<path>.tmp` then renames it over `path`: readers never see half a file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

export function readJsonFile<T>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new UsageError(`${what} not found: ${path}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new UsageError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** A metrics.jsonl line: a logged training step, an evaluation, or one sparse layer's expert health at an evaluation. */
export type MetricsRecord = { kind: 'train' | 'eval' | 'health'; step: number } & Record<string, number | string | null>;

export class RunFolder {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = resolve(dir);
  }

  path(file: keyof typeof RUN_FILES): string {
    return join(this.dir, RUN_FILES[file]);
  }

  get checkpointDir(): string {
    return this.path('checkpoint');
  }

  /** A new run in `dir`, which must not exist or be empty: an existing run is never overwritten. */
  static create(dir: string): RunFolder {
    RunFolder.checkNew(dir);
    const abs = resolve(dir);
    mkdirSync(abs, { recursive: true });
    return new RunFolder(abs);
  }

  /** Throws a UsageError unless `dir` can hold a new run (absent, or an empty folder). */
  static checkNew(dir: string): void {
    const abs = resolve(dir);
    if (existsSync(abs)) {
      if (!statSync(abs).isDirectory()) throw new UsageError(`--out ${dir} exists and is not a folder`);
      if (readdirSync(abs).length > 0) {
        const isRun = existsSync(join(abs, RUN_FILES.config));
        throw new UsageError(
          isRun
            ? `--out ${dir} already holds a run; continue it with --resume ${dir} or choose another --out`
            : `--out ${dir} is not empty; choose an empty or new folder`,
        );
      }
    }
  }

  /** An existing run (it must have a config.json). `flag` names the option in errors. */
  static open(dir: string, flag = '--run'): RunFolder {
    const abs = resolve(dir);
    if (!existsSync(abs)) throw new UsageError(`${flag} ${dir}: no such folder`);
    if (!existsSync(join(abs, RUN_FILES.config))) throw new UsageError(`${flag} ${dir} is not a run folder (no ${RUN_FILES.config})`);
    return new RunFolder(abs);
  }

  /** Whether a checkpoint exists (including one a crash mid-save left at checkpoint.old-*, which loading recovers). */
  hasCheckpoint(): boolean {
    return existsSync(this.checkpointDir) || readdirSync(this.dir).some((n) => n.startsWith(`${RUN_FILES.checkpoint}.old-`));
  }

  appendMetrics(record: MetricsRecord): void {
    // One synchronous append per line: a killed process loses at most the line being written.
    appendFileSync(this.path('metrics'), `${JSON.stringify(record)}\n`);
  }

  /** All complete metrics lines (a torn last line from a killed process is skipped). */
  readMetrics(): MetricsRecord[] {
    const path = this.path('metrics');
    if (!existsSync(path)) return [];
    const out: MetricsRecord[] = [];
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as MetricsRecord);
      } catch {
        // torn line
      }
    }
    return out;
  }

  /**
   * Keeps only the metrics of steps up to `step` (the checkpoint a resumed run restarts from), so that
   * the file reads as if the run had never been interrupted.
   */
  truncateMetrics(step: number): void {
    const kept = this.readMetrics().filter((r) => r.step <= step);
    const path = this.path('metrics');
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    renameSync(tmp, path);
  }

  /**
   * Marks the run as being trained by this process, so that a second `train --resume` of the same
   * folder is refused instead of interleaving checkpoints. Returns the function that releases it.
   */
  lock(): () => void {
    const path = this.path('lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
        return () => rmSync(path, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
        if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) {
          throw new UsageError(`${this.dir} is being trained by process ${pid}; stop it first (or delete ${path} if that process is not peer-train)`);
        }
        rmSync(path, { force: true }); // left by a killed process
      }
    }
    throw new UsageError(`cannot lock ${this.dir}: ${path} keeps reappearing`);
  }

  removeSummary(): void {
    rmSync(this.path('summary'), { force: true });
  }
}
