// summary.json: the numbers a run is compared by (sweep tables and reports read this file).
import { formatCount } from '../train/flops.js';
import { formatDuration } from '../train/progress.js';

export interface RunSummary {
  run: string;
  name: string;
  ffw: string;
  params_total: number;
  params_active_per_token: number;
  params_embedding: number;
  flops_per_token: number;
  /** Training FLOPs of the whole run: 3 * flops_per_token * tokens. */
  flops: number;
  tokens: number;
  steps: number;
  val_loss: number;
  val_ppl: number;
  val_bpb: number;
  /** Validation tokens the final evaluation scored. */
  val_tokens: number;
  /** Wall seconds of the training loop (steps, evals, checkpoints), over all processes of the run. */
  wall_seconds: number;
  /** Training tokens per second of step time. */
  tokens_per_s: number;
  /** Model FLOPs utilization against the engine's measured matMul rate (null when unmeasured). */
  mfu: number | null;
  backend: string;
  seed: number;
  finished_at: string;
}

export function formatSummary(s: RunSummary): string {
  return [
    `run       ${s.run}`,
    `model     ${s.name}: ffw ${s.ffw}, ${formatCount(s.params_total)} parameters, ${formatCount(s.params_active_per_token)} active per token`,
    `trained   ${s.steps} steps, ${formatCount(s.tokens)} tokens, ${s.flops.toExponential(3)} FLOPs (${formatCount(s.flops_per_token)} per token forward)`,
    `val       loss ${s.val_loss.toFixed(4)} | ppl ${s.val_ppl.toFixed(3)} | bpb ${s.val_bpb.toFixed(4)} (${s.val_tokens.toLocaleString('en-US')} tokens)`,
    `speed     ${Math.round(s.tokens_per_s).toLocaleString('en-US')} tokens/s` +
      `${s.mfu === null ? '' : `, mfu ${(100 * s.mfu).toFixed(1)}%`}, ${formatDuration(s.wall_seconds)} wall, backend ${s.backend}`,
  ].join('\n');
}
