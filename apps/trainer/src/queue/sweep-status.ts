// `peer-train sweep --queue URL --status`: the state of queued sweeps, from any machine that reaches
// the Redis (no sweep folder needed): each sweep's runs with state, worker, step, loss and ETA.
import { UsageError } from '../errors.js';
import { probeRedis } from './connect.js';
import { jobRow } from './job-row.js';
import { jobIdOf, SWEEPS_KEY, type SweepEntry } from './jobs.js';
import { renderRunTable, stateCounts, type RunRow } from './run-table.js';
import { parseQueueUrl, type QueueUrl } from './redis-url.js';
import { openQueue } from './sweep-on-queue.js';

export interface SweepStatusOptions {
  queue: string;
  /** One sweep (its key: the sweep folder's name); default every sweep on the queue. */
  key?: string;
  print?: (text: string) => void;
  log?: (line: string) => void;
}

async function sweepRows(queue: ReturnType<typeof openQueue>, entry: SweepEntry): Promise<RunRow[]> {
  const rows: RunRow[] = [];
  for (const run of entry.runs) {
    const job = await queue.getJob(jobIdOf(entry.key, run.id));
    if (!job) {
      // the sweep command does not queue a run that had finished before it started
      rows.push({ id: run.id, state: 'finished', worker: null, step: run.steps, steps: run.steps, loss: null, valLoss: null, tokensPerSecond: null, etaSeconds: null, note: 'not on the queue' });
      continue;
    }
    rows.push(jobRow(run.id, run.steps, await job.getState(), job));
  }
  return rows;
}

/** Prints the tables; returns how many sweeps were shown. */
export async function sweepStatusCommand(options: SweepStatusOptions): Promise<number> {
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const q: QueueUrl = parseQueueUrl(options.queue);
  await probeRedis(q);
  const queue = openQueue(q, log);
  try {
    const client = await queue.client;
    const all = await client.hgetall(SWEEPS_KEY);
    const keys = options.key !== undefined ? [options.key] : Object.keys(all).sort();
    if (options.key !== undefined && all[options.key] === undefined) {
      const known = Object.keys(all).sort();
      throw new UsageError(`no sweep '${options.key}' on the queue at ${q.masked}${known.length > 0 ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`);
    }
    if (keys.length === 0) {
      print(`no sweeps on the queue at ${q.masked}\n`);
      return 0;
    }
    for (const key of keys) {
      const entry = JSON.parse(all[key]!) as SweepEntry;
      const rows = await sweepRows(queue, entry);
      print(`sweep ${entry.key} (${entry.source}; folder ${entry.out} on ${entry.host})\n${renderRunTable(rows).join('\n')}\n${stateCounts(rows)}\n\n`);
    }
    return keys.length;
  } finally {
    await queue.close();
  }
}
