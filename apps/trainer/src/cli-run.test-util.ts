// Test helpers for runs of the built CLI: the arguments of a short tiny-model training run, readers
// of what a run folder holds while and after it trains (metrics, checkpoint step), and a run killed
// after a checkpoint.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { startCli } from './cli-process.test-util.js';

/**
 * `peer-train train` arguments of a tiny-model run on moby-dick: `steps` steps, a checkpoint every 10
 * steps, an evaluation every `evalEvery`, a log line every 5, the corpus cached in `cacheDir`.
 */
export function tinyTrainArgs(steps: number, evalEvery: number, cacheDir: string): string[] {
  return [
    '--preset', 'tiny',
    '--data', 'moby-dick',
    '--steps', String(steps),
    '--set', `data.cacheDir=${cacheDir}`,
    '--set', 'train.checkpointEvery=10',
    '--set', `train.evalEvery=${evalEvery}`,
    '--set', 'train.logEvery=5',
  ];
}

/** One line of a run's metrics.jsonl. */
export interface MetricRecord {
  kind: 'train' | 'eval' | 'health';
  step: number;
  [key: string]: number | string | null;
}

export const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

export const runMetrics = (run: string): MetricRecord[] =>
  readFileSync(join(run, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as MetricRecord);

/** Metrics without the timing fields, which differ from run to run. */
export const numbersOf = (run: string) => runMetrics(run).map(({ tokens_per_s: _a, mfu: _b, train_seconds: _c, ...rest }) => rest);

/** The step of the run's checkpoint, or undefined while there is none (or it is being replaced). */
export const checkpointStep = (run: string): number | undefined => {
  const path = join(run, 'checkpoint', 'manifest.json');
  if (!existsSync(path)) return undefined;
  try {
    return (JSON.parse(readJson<{ metadata: Record<string, string> }>(path).metadata['peer-trainer']!) as { step: number }).step;
  } catch {
    return undefined; // being replaced right now
  }
};

/** Polls `condition` every 20 ms; throws naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!condition()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `peer-train train ...trainArgs --out run` in `cwd` and kills it (SIGKILL) once its checkpoint
 * is at step `step` or later (within `timeoutMs`); checks that it died of the signal before writing
 * its summary. Returns the step of the checkpoint it left.
 */
export async function killAfterCheckpoint(trainArgs: string[], run: string, step: number, options: { cwd: string; timeoutMs: number }): Promise<number> {
  const child = startCli(['train', ...trainArgs, '--out', run], { cwd: options.cwd });
  await waitFor(() => (checkpointStep(run) ?? 0) >= step, `a checkpoint at step ${step}`, options.timeoutMs);
  child.kill('SIGKILL');
  const killed = await child.result;
  expect(killed.signal).toBe('SIGKILL');
  expect(existsSync(join(run, 'summary.json'))).toBe(false);
  return checkpointStep(run)!;
}
