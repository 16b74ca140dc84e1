// Building the model of a config: the only place that constructs TransformerLM, after the layer
// kinds are registered. A config the layers reject (e.g. N not a perfect square, k > sqrt(N)) is a
// usage error naming the field, not a crash.
import { ConfigError } from '@peer/feed-forward';
import { TransformerLM } from '@peer/model';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { registerLayers } from '../layers.js';

/** Fields the factories pass from the model config rather than from ffw.options. */
const MODEL_FIELDS: Record<string, string> = { dim: 'model.dim', seed: 'model.seed' };

/** A layer's `invalid X config: field = value: problem` as the config key the user sets. */
export function layerConfigMessage(message: string, kind: string): string {
  const rest = message.replace(/^invalid [\w -]+ config: /i, '');
  const field = /^([\w.]+) = /.exec(rest)?.[1];
  if (field === undefined) return `invalid config: model.ffw.options (${kind}): ${rest}`;
  const key = MODEL_FIELDS[field] ?? `model.ffw.options.${field}`;
  return `invalid config: ${key}${rest.slice(field.length)} (${kind} layer)`;
}

export function buildModel(config: TrainConfig): TransformerLM {
  registerLayers(config.optim);
  try {
    return new TransformerLM(config.model);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(layerConfigMessage(err.message, config.model.ffw.kind));
    throw err;
  }
}
