// How many threads the wasm engine runs: `--threads`, else the config's engine.threads, else every
// core of the machine; a sweep running several trainings at once divides the cores between them.
import { availableParallelism } from 'node:os';

/** Logical cores of this machine: the default thread count. */
export function machineCores(): number {
  return Math.max(1, availableParallelism());
}

/** The wasm engine's threads: the flag, else the config, else every core. */
export function engineThreads(flag: number | undefined, config: number | undefined): number {
  return flag ?? config ?? machineCores();
}

/** Threads of each of `jobs` runs sharing `cores` (at least one each; no core runs two threads). */
export function threadsPerJob(jobs: number, cores: number = machineCores()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, jobs)));
}

/** `, 2 threads` (with the reason when fewer than requested run) for the engine's log line; empty off wasm. */
export function threadsText(choice: { threads?: number; threadsNote?: string }): string {
  if (choice.threads === undefined) return '';
  return `, ${choice.threads} thread${choice.threads === 1 ? '' : 's'}${choice.threadsNote ? ` (${choice.threadsNote})` : ''}`;
}
