// The command line of sweeps across machines: `peer-train worker` and `peer-train sweep --status`
// (`sweep --queue` itself is the sweep command's). The work lives in src/commands/worker.ts and
// src/queue/.
import { join } from 'node:path';
import type { Command } from 'commander';
import { intArg } from './cli-args.js';
import { UsageError } from './errors.js';
import { workerCommand } from './commands/worker.js';
import { sweepKeyOf } from './queue/jobs.js';
import { sweepStatusCommand } from './queue/sweep-status.js';
import { loadSweep } from './sweep/sweep-config.js';

export function addWorkerCommand(worker: Command): void {
  worker
    .description('train the runs of sweeps queued with `sweep --queue URL` (BullMQ on Redis), each in its own process; Ctrl-C checkpoints and hands the runs back')
    .requiredOption('--queue <url>', 'redis://[user:pass@]host:port[/db] (rediss:// for TLS)')
    .option('--runs-dir <dir>', "where the sweeps' run folders go, <dir>/<sweep folder name>/runs/<run> (a shared folder on several machines)", 'runs')
    .option('--concurrency <n>', 'runs trained at the same time (they share the cores: each gets cores / N wasm threads)', intArg(1), 1)
    .option('--stall-seconds <s>', 'a worker silent this long has lost its run: another worker takes it (and resumes it from its checkpoint)', intArg(1), 30)
    .action(async (opts: { queue: string; runsDir: string; concurrency: number; stallSeconds: number }) => {
      const code = await workerCommand(opts);
      if (code !== 0) process.exit(code);
    });
}

/** `sweep --status`: the sweep named by --out, --preset or --config, else every sweep on the queue. */
export async function sweepStatusAction(opts: { queue?: string; out?: string; preset?: string; config?: string }): Promise<void> {
  if (opts.queue === undefined) throw new UsageError('--status shows the sweeps on a queue: give --queue URL');
  let key: string | undefined;
  if (opts.out !== undefined) key = sweepKeyOf(opts.out);
  else if (opts.preset !== undefined || opts.config !== undefined) key = sweepKeyOf(join('runs', `sweep-${loadSweep({ preset: opts.preset, config: opts.config }).name}`));
  await sweepStatusCommand({ queue: opts.queue, key });
}
