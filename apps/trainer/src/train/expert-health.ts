// Expert health while training: between two evaluations every sparse layer (PEER, PKM, MoE) records
// its routing with its own usage statistics (startUsage / stopUsage, which only read the routing
// results), and at each evaluation the window is summarized per layer:
//   usage         fraction of experts given router weight since the last evaluation
//   unevenness    KL(z || uniform) of the normalized router weight z (0 = perfectly even)
//   dead          experts never retrieved since the last evaluation
//   head overlap  share of retrievals whose expert another head of the same token also retrieved
//                 (layers with several heads)
// The evaluation passes themselves are not counted: the window is the training steps only.
//
// Axes: N experts of a layer.
import type { FeedForwardLayer, UsageReport } from '@peer/feed-forward';
import type { MetricsRecord } from '../run/run-folder.js';

/** The part of a model the monitor needs (TransformerLM has it). */
export interface HasFeedForwards {
  feedForwards(): readonly FeedForwardLayer[];
}

/** The sparse layers of a model (those that collect routing statistics), with their block index. */
export function sparseLayers(model: HasFeedForwards): { block: number; layer: FeedForwardLayer }[] {
  return model
    .feedForwards()
    .map((layer, block) => ({ block, layer }))
    .filter(({ layer }) => typeof layer.startUsage === 'function' && typeof layer.stopUsage === 'function');
}

export interface LayerHealth {
  block: number;
  /** ffw kind of the layer (peer, pkm, moe, moe-ec). */
  kind: string;
  /** Experts (or memory slots) N. */
  experts: number;
  usage: number;
  /** KL to uniform in nats; NaN when nothing was retrieved. */
  unevenness: number;
  dead: number;
  /** Only for layers with several heads. */
  headOverlap?: number;
  retrievals: number;
}

export interface HealthWindow {
  /** The window covers the training steps after `sinceStep` up to `step`. */
  sinceStep: number;
  step: number;
  layers: LayerHealth[];
}

/** Health of one layer from its usage report. */
export function layerHealth(block: number, kind: string, r: UsageReport): LayerHealth {
  let dead = 0;
  let retrievals = 0;
  for (let i = 0; i < r.count; i++) {
    const h = r.hits[i]!;
    if (h === 0) dead++;
    retrievals += h;
  }
  return {
    block,
    kind,
    experts: r.count,
    usage: r.usage,
    unevenness: r.unevenness,
    dead,
    ...(r.headOverlap !== undefined ? { headOverlap: r.headOverlap } : {}),
    retrievals,
  };
}

/** Collects the health windows of a model's sparse layers. Inactive (no records) for a dense model. */
export class ExpertHealthMonitor {
  private readonly layers: { block: number; layer: FeedForwardLayer }[];
  private sinceStep: number | undefined;

  constructor(model: HasFeedForwards) {
    this.layers = sparseLayers(model);
  }

  get hasSparseLayers(): boolean {
    return this.layers.length > 0;
  }

  /** Starts a window after `step` (a diverging step's non-finite router weights are left out, not fatal). */
  start(step: number): void {
    for (const { layer } of this.layers) layer.startUsage!({ skipNonFinite: true });
    this.sinceStep = step;
  }

  /** Ends the window at `step` and returns it; recording stays off until `start`. Undefined when no window is open or the model has no sparse layer. */
  collect(step: number): HealthWindow | undefined {
    if (this.sinceStep === undefined || this.layers.length === 0) return undefined;
    const layers = this.layers.map(({ block, layer }) => layerHealth(block, layer.kind, layer.stopUsage!()));
    const window = { sinceStep: this.sinceStep, step, layers };
    this.sinceStep = undefined;
    return window;
  }

  /** Stops recording without a report. */
  stop(): void {
    if (this.sinceStep === undefined) return;
    for (const { layer } of this.layers) layer.stopUsage!();
    this.sinceStep = undefined;
  }
}

/** One metrics.jsonl record per layer (`kind: "health"`). */
export function healthRecords(window: HealthWindow, tokens: number): MetricsRecord[] {
  return window.layers.map((l) => ({
    kind: 'health',
    step: window.step,
    tokens,
    since_step: window.sinceStep,
    block: l.block,
    layer: l.kind,
    experts: l.experts,
    usage: l.usage,
    unevenness: Number.isFinite(l.unevenness) ? l.unevenness : null,
    dead: l.dead,
    ...(l.headOverlap !== undefined ? { head_overlap: Number.isFinite(l.headOverlap) ? l.headOverlap : null } : {}),
    retrievals: l.retrievals,
  }));
}

const percent = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : 'n/a');

/** Progress lines, one per layer: `experts block 2 (peer, 16,384): usage 97.1% | KL 0.1520 | dead 12 | head overlap 0.3% (steps 40-80)`. */
export function formatHealth(window: HealthWindow): string[] {
  return window.layers.map((l) => {
    const overlap = l.headOverlap !== undefined ? ` | head overlap ${percent(l.headOverlap)}` : '';
    const kl = Number.isFinite(l.unevenness) ? l.unevenness.toFixed(4) : 'n/a';
    return (
      `experts block ${l.block} (${l.kind}, ${l.experts.toLocaleString('en-US')}): usage ${percent(l.usage)} | KL ${kl} | ` +
      `dead ${l.dead.toLocaleString('en-US')}${overlap} (steps ${window.sinceStep + 1}-${window.step})`
    );
  });
}

/** Writes a window's records and progress lines. */
export function reportHealth(window: HealthWindow, tokens: number, writeMetrics: (r: MetricsRecord) => void, log: (line: string) => void): void {
  for (const r of healthRecords(window, tokens)) writeMetrics(r);
  for (const line of formatHealth(window)) log(line);
}
