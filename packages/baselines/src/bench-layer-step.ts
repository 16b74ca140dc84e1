// The baselines at matched active parameters, timed by @peer/feed-forward's `timeLayerStep` (one
// harness for every feed-forward layer's training step).
// The trainer's `peer-train bench layer --layer dense|moe|moe-ec|pkm` calls `benchBaselineLayer`.
import { timeLayerStep, type FeedForwardLayer, type LayerStepTiming, type TimeLayerStepOptions } from '@peer/feed-forward';
import { DenseFfw } from './dense-ffw.js';
import { MoeExpertChoice } from './moe-expert-choice.js';
import { MoeTokenChoice } from './moe-token-choice.js';
import { ProductKeyMemory } from './pkm.js';

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** The baseline feed-forward kinds, named as in the model config (`ffw.kind`). */
export const BASELINE_KINDS = ['dense', 'moe', 'moe-ec', 'pkm'] as const;
export type BaselineKind = (typeof BASELINE_KINDS)[number];

/**
 * The benchmark configs, matched on active parameters per token to the dense FFW of width 4D
 * (2 * D * 4D + biases; 525,568 at D = 256):
 * - dense: hidden 4D.
 * - moe: Switch, 16 experts of hidden 4D, top-1 (one expert per token, plus the router).
 * - moe-ec: expert choice, 16 experts of hidden 4D, capacity factor 1 (one expert per token on average).
 * - pkm: the paper's PKM (1024^2 memories, 8 heads, top-32, query BN) with dk = 24 so that query
 *   net + sub-keys + 256 value rows come to 557,824 at D = 256 (6% above the FFW).
 * `overrides` replace fields of these configs (e.g. { experts: 128 }).
 */
export function baselineBenchConfig(kind: BaselineKind, dim: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<BaselineKind, Record<string, unknown>> = {
    dense: { dim, hidden: 4 * dim },
    moe: { dim, experts: 16, hidden: 4 * dim, topK: 1 },
    'moe-ec': { dim, experts: 16, hidden: 4 * dim, capacityFactor: 1 },
    pkm: { dim, memories: 1024 * 1024, heads: 8, topK: 32, dimKey: 24 },
  };
  if (!(kind in base)) throw new Error(`benchBaselineLayer: layer must be one of ${BASELINE_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  return { ...base[kind], ...overrides };
}

/** Builds a baseline layer from its kind and config (validated by the layer). */
export function createBaselineLayer(kind: BaselineKind, config: Record<string, unknown>): FeedForwardLayer {
  switch (kind) {
    case 'dense':
      return new DenseFfw(config as never);
    case 'moe':
      return new MoeTokenChoice(config as never);
    case 'moe-ec':
      return new MoeExpertChoice(config as never);
    case 'pkm':
      return new ProductKeyMemory(config as never);
  }
}

export interface BaselineBenchOptions extends TimeLayerStepOptions {
  layer: BaselineKind;
  /** Model width. Default 256. */
  dim?: number;
  /** Fields that replace the matched-parameter config of `baselineBenchConfig`. */
  overrides?: Record<string, unknown>;
}

export interface BaselineBenchResult extends Omit<LayerStepTiming, 'layer'> {
  layer: BaselineKind;
  config: Record<string, unknown>;
  /** Seconds spent building the layer (table initialization for PKM). */
  setup_seconds: number;
}

/** Builds the baseline `layer` at matched active parameters, times it, disposes it. */
export async function benchBaselineLayer(options: BaselineBenchOptions): Promise<BaselineBenchResult> {
  const config = baselineBenchConfig(options.layer, options.dim ?? 256, options.overrides);
  const t0 = performance.now();
  const layer = createBaselineLayer(options.layer, config);
  const setup = (performance.now() - t0) / 1000;
  try {
    const timing = await timeLayerStep(layer, options);
    return { ...timing, layer: options.layer, config, setup_seconds: round(setup, 2) };
  } finally {
    layer.dispose();
  }
}
