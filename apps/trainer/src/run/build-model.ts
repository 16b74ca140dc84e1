// Building the model of a config: the only place that constructs TransformerLM, after the layer
// kinds are registered. A config the layers reject (e.g. N not a perfect square, k > sqrt(N)) is a
// usage error naming the field, not a crash.
import { ModelConfigError, TransformerLM } from '@peer/model';
import type { TrainConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { registerLayers } from '../layers.js';

/** Errors of layer configs: each layer package has its own error class with a `... config:` message. */
function isConfigError(err: unknown): err is Error {
  return err instanceof ModelConfigError || (err instanceof Error && /ConfigError$/.test(err.name));
}

export function buildModel(config: TrainConfig): TransformerLM {
  registerLayers(config.optim);
  try {
    return new TransformerLM(config.model);
  } catch (err) {
    if (isConfigError(err)) throw new UsageError(`invalid config: model.ffw (${config.model.ffw.kind}): ${err.message}`);
    throw err;
  }
}
