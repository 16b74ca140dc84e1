// summary.json: the numbers a run is compared by (sweep tables and reports read this file).
import type { LayerUsage } from '../commands/usage.js';
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
  /**
   * Expert usage of each sparse layer over the final evaluation (the final weights, val_tokens
   * tokens); absent for dense models, on GPU engines and in summaries older than the field.
   */
  usage?: SummaryUsage[];
  finished_at: string;
}

/** One sparse layer's usage in summary.json (usage.json holds the histogram and the per-expert weights). */
export interface SummaryUsage {
  block: number;
  kind: string;
  /** Experts (or memory slots) N. */
  experts: number;
  /** Fraction of experts given any router weight. */
  usage: number;
  /** KL(z || uniform) of the normalized router weight, nats; null when nothing was retrieved. */
  unevenness: number | null;
  /** Fraction of experts never retrieved. */
  dead_fraction: number;
}

export function summaryUsage(l: LayerUsage): SummaryUsage {
  return {
    block: l.block,
    kind: l.kind,
    experts: l.count,
    usage: l.usage,
    unevenness: Number.isFinite(l.unevenness) ? l.unevenness : null,
    dead_fraction: l.dead_fraction,
  };
}

export function formatSummary(s: RunSummary): string {
  return [
    `run       ${s.run}`,
    `model     ${s.name}: ffw ${s.ffw}, ${formatCount(s.params_total)} parameters, ${formatCount(s.params_active_per_token)} active per token`,
    `trained   ${s.steps} steps, ${formatCount(s.tokens)} tokens, ${s.flops.toExponential(3)} FLOPs (${formatCount(s.flops_per_token)} per token forward)`,
    `val       loss ${s.val_loss.toFixed(4)} | ppl ${s.val_ppl.toFixed(3)} | bpb ${s.val_bpb.toFixed(4)} (${s.val_tokens.toLocaleString('en-US')} tokens)`,
    `speed     ${Math.round(s.tokens_per_s).toLocaleString('en-US')} tokens/s` +
      `${s.mfu === null ? '' : `, mfu ${(100 * s.mfu).toFixed(1)}%`}, ${formatDuration(s.wall_seconds)} wall, backend ${s.backend}`,
    ...(s.usage ?? []).map(
      (u) =>
        `experts   block ${u.block} (${u.kind}, ${u.experts.toLocaleString('en-US')}): usage ${(100 * u.usage).toFixed(1)}% | ` +
        `KL ${u.unevenness === null ? 'n/a' : u.unevenness.toFixed(4)} | dead ${(100 * u.dead_fraction).toFixed(1)}% (final evaluation)`,
    ),
  ].join('\n');
}
