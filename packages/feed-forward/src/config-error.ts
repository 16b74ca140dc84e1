// The one error type for a layer or model config that fails validation. Each package throws its own
// subclass (PeerConfigError, LayerConfigError, DenseFfwConfigError, ModelConfigError) with its own
// message; applications recognise all of them with `instanceof ConfigError` and show the message.

// ESM and CJS builds of this package may both be loaded in one process (each with its own class):
// `instanceof ConfigError` checks a process-wide brand, so an error of either build is recognised.
const BRAND = Symbol.for('@peer/feed-forward/config-error');

/** A config that failed validation; the message names the config, each bad field and its value. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses keep the ordinary prototype-chain check.
    if (this !== ConfigError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** The value at `path` (a validation issue's path) in a config input, for the error message; undefined where it does not exist. */
export function valueAtPath(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}
