// One way to show a value in an error message: `got ${formatValue(x)}`, `field = ${formatValue(x)}`.
import * as tf from '@tensorflow/tfjs-core';

export interface FormatValueOptions {
  /** Longest text; longer text keeps its first `maxLength - 3` characters and ends in '...'. Default: no limit. */
  maxLength?: number;
  /** The text for `undefined` (e.g. 'missing' for a config key). Default 'undefined'. */
  undefinedText?: string;
}

/**
 * Strings quoted, numbers (NaN and Infinity included), booleans and null as written, tensors by
 * dtype and shape, arrays and objects as JSON; what JSON cannot write (functions, cycles,
 * bigints) through `String`.
 */
export function formatValue(value: unknown, options: FormatValueOptions = {}): string {
  if (value === undefined) return options.undefinedText ?? 'undefined';
  if (value instanceof tf.Tensor) return `a ${value.dtype} tensor of shape [${value.shape.join(', ')}]`;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  const max = options.maxLength ?? Infinity;
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
