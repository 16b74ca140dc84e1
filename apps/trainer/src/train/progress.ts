// Training progress on stderr: a live bar (loss, tokens/s, ETA) on a terminal, plain log lines when
// stderr is a pipe or file (CI logs, `| tee`), so that logs stay readable.
import cliProgress from 'cli-progress';

export interface ProgressStats {
  step: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  /** Model FLOPs utilization in [0, 1], undefined when the reference rate is unknown. */
  mfu: number | undefined;
}

export interface ProgressReporter {
  /** Steps run so far (after each step). `logLine` asks for a plain log line (every logEvery steps). */
  update(stats: ProgressStats, logLine: boolean): void;
  /** A message that must not be overwritten by the bar (eval results, warnings). */
  log(line: string): void;
  stop(): void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatStats(s: ProgressStats, totalSteps: number, etaSeconds: number): string {
  const mfu = s.mfu === undefined ? '' : ` | mfu ${(100 * s.mfu).toFixed(1)}%`;
  return (
    `step ${s.step}/${totalSteps} | loss ${s.loss.toFixed(4)} | lr ${s.lr.toExponential(2)} | ` +
    `${Math.round(s.tokensPerSecond).toLocaleString('en-US')} tok/s${mfu} | eta ${formatDuration(etaSeconds)}`
  );
}

/**
 * A reporter for a run of `totalSteps` that (re)starts at `startStep`. ETA comes from the mean step
 * time since this process started (not since step 0, so a resumed run estimates correctly).
 */
export function createProgress(options: {
  totalSteps: number;
  startStep: number;
  stream?: NodeJS.WriteStream;
  /** Force a mode; default: bar when the stream is a TTY. */
  tty?: boolean;
}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const { totalSteps, startStep } = options;
  const t0 = performance.now();
  const eta = (step: number) => {
    const done = step - startStep;
    return done > 0 ? (((performance.now() - t0) / 1000) * (totalSteps - step)) / done : NaN;
  };

  if (!(options.tty ?? stream.isTTY)) {
    return {
      update(stats, logLine) {
        if (logLine) stream.write(`${formatStats(stats, totalSteps, eta(stats.step))}\n`);
      },
      log(line) {
        stream.write(`${line}\n`);
      },
      stop() {},
    };
  }

  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bar} {value}/{total} | loss {loss} | {tps} tok/s | {mfu} | eta {etaText}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const bar = multi.create(totalSteps, startStep, { loss: '-', tps: '-', mfu: '', etaText: '?' });
  return {
    update(stats) {
      bar.update(stats.step, {
        loss: stats.loss.toFixed(4),
        tps: Math.round(stats.tokensPerSecond).toLocaleString('en-US'),
        mfu: stats.mfu === undefined ? '' : `mfu ${(100 * stats.mfu).toFixed(1)}%`,
        etaText: formatDuration(eta(stats.step)),
      });
    },
    log(line) {
      multi.log(`${line}\n`);
    },
    stop() {
      multi.stop();
    },
  };
}
