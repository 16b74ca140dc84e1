// A worker's view of its run's progress: the train records the training process appends to the run
// folder's metrics.jsonl (structured, unlike its log), read incrementally. A resumed run rewrites the
// file shorter (truncated to its checkpoint): reading then starts over.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import type { MetricsRecord } from '../run/run-folder.js';

export class MetricsFollower {
  private offset = 0;
  private partial = '';

  constructor(private readonly path: string) {}

  /** The last complete train record appended since the previous call (undefined: none). */
  poll(): MetricsRecord | undefined {
    if (!existsSync(this.path)) return undefined;
    const size = statSync(this.path).size;
    if (size < this.offset) {
      this.offset = 0;
      this.partial = '';
    }
    if (size === this.offset) return undefined;
    const buffer = Buffer.alloc(size - this.offset);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, buffer, 0, buffer.length, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset = size;
    const lines = (this.partial + buffer.toString('utf8')).split('\n');
    this.partial = lines.pop() ?? '';
    let last: MetricsRecord | undefined;
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const record = JSON.parse(line) as MetricsRecord;
        if (record.kind === 'train') last = record;
      } catch {
        // a line torn by a killed process
      }
    }
    return last;
  }
}

/** Seconds left at `step` of `steps`, from the pace since (`startStep`, `startTime`) (NaN-free: null when unknown). */
export function etaSeconds(step: number, steps: number, startStep: number, startTime: number, now: number): number | null {
  const done = step - startStep;
  if (done <= 0) return null;
  return (((now - startTime) / 1000) * (steps - step)) / done;
}
