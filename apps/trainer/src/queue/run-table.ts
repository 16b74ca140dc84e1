// The table of a queued sweep's runs (state, worker, step, loss, speed, ETA), as the sweep command
// shows it live and `sweep --status` prints it once.
import { formatDuration } from '../train/progress.js';

export interface RunRow {
  id: string;
  /** queued, retrying, running, done, failed, finished (before this sweep command), missing. */
  state: string;
  worker: string | null;
  step: number | null;
  steps: number;
  /** The last logged training loss. */
  loss: number | null;
  /** The final validation loss (a finished run). */
  valLoss: number | null;
  tokensPerSecond: number | null;
  etaSeconds: number | null;
  /** Tries so far, resumptions, the reason of a failure. */
  note: string;
}

const HEADER = ['run', 'state', 'worker', 'step', 'loss', 'val_loss', 'tok/s', 'eta', ''];
const RIGHT = new Set([3, 4, 5, 6, 7]);

export function rowCells(r: RunRow): string[] {
  return [
    r.id,
    r.state,
    r.worker ?? '',
    `${r.step === null ? '-' : r.step.toLocaleString('en-US')}/${r.steps.toLocaleString('en-US')}`,
    r.loss === null ? '' : r.loss.toFixed(4),
    r.valLoss === null ? '' : r.valLoss.toFixed(4),
    r.tokensPerSecond === null ? '' : Math.round(r.tokensPerSecond).toLocaleString('en-US'),
    r.etaSeconds === null ? '' : formatDuration(r.etaSeconds),
    r.note,
  ];
}

/** The rows as aligned text lines, a header first. */
export function renderRunTable(rows: readonly RunRow[]): string[] {
  const cells = [HEADER, ...rows.map(rowCells)];
  const widths = HEADER.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  return cells.map((row) => row.map((cell, c) => (RIGHT.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

/** One count line under the table, e.g. `4 runs: 2 done, 1 running, 1 queued`. */
export function stateCounts(rows: readonly RunRow[]): string {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  return `${rows.length} runs: ${[...counts].map(([state, n]) => `${n} ${state}`).join(', ')}`;
}
