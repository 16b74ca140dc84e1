// The sparse layer's shape of a run, for the sweep tables and the ablation plots: N experts (or
// memory slots), h retrieval heads, k experts per head and the query norm, read through each layer's
// own config parser so that the layers' defaults fill what the config leaves out.
import { parseMoeExpertChoiceConfig, parseMoeTokenChoiceConfig, parsePkmConfig } from '@peer/baselines';
import { resolvePeerConfig } from '@peer/layer';
import type { TrainConfig } from '../config/schema.js';
import { MOE_DEFAULT_EXPERTS } from '../layers.js';

export interface FfwFacts {
  /** Experts (PEER, MoE) or memory slots (PKM); null for dense. */
  n_experts: number | null;
  /** Retrieval heads (PEER, PKM). */
  h: number | null;
  /** Experts or memories per head (PEER, PKM), experts per token (MoE token choice). */
  k: number | null;
  /** none, batch or layer (PEER, PKM). */
  query_norm: string | null;
}

export const NO_FACTS: FfwFacts = { n_experts: null, h: null, k: null, query_norm: null };

/** The facts of `config`'s sparse layer; NO_FACTS for dense models or options the layer rejects. */
export function ffwFacts(config: Pick<TrainConfig, 'model'>): FfwFacts {
  const { kind, options } = config.model.ffw;
  const dim = config.model.dim;
  try {
    switch (kind) {
      case 'peer': {
        const c = resolvePeerConfig({ ...options, dim });
        return { n_experts: c.numExperts, h: c.heads, k: c.topK, query_norm: c.queryNorm };
      }
      case 'pkm': {
        const c = parsePkmConfig({ ...options, dim });
        return { n_experts: c.memories, h: c.heads, k: c.topK, query_norm: c.queryNorm };
      }
      case 'moe': {
        const c = parseMoeTokenChoiceConfig({ experts: MOE_DEFAULT_EXPERTS, ...options, dim });
        return { n_experts: c.experts, h: null, k: c.topK, query_norm: null };
      }
      case 'moe-ec': {
        const c = parseMoeExpertChoiceConfig({ experts: MOE_DEFAULT_EXPERTS, ...options, dim });
        return { n_experts: c.experts, h: null, k: null, query_norm: null };
      }
      default:
        return NO_FACTS;
    }
  } catch {
    // the run itself reports a bad option; the table just leaves the cells empty
    return NO_FACTS;
  }
}
