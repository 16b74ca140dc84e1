// Layer state as named arrays (safetensors entries): dense variables out, and back in with checks
// that name the entry and what is wrong with it.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedArray } from '@peer/expert-store';
import type { StateEntryGetter } from '@peer/feed-forward';

/** A float32 copy of `variable` as one entry. */
export function variableEntry(name: string, variable: tf.Variable): NamedArray {
  return { name, dtype: 'F32', shape: [...variable.shape], data: Float32Array.from(variable.dataSync() as Float32Array) };
}

/** The entry `name` from `get`, checked for shape; F32 or F64 data, returned as float32. */
export function requireEntry(get: StateEntryGetter, name: string, shape: readonly number[]): Float32Array {
  const entry = get(name);
  if (!entry) throw new Error(`state entry '${name}' is missing`);
  if (entry.shape.length !== shape.length || entry.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`state entry '${name}' has shape [${entry.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  if (entry.dtype !== 'F32' && entry.dtype !== 'F64') {
    throw new Error(`state entry '${name}' has dtype ${entry.dtype}, expected F32`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (entry.data.length !== size) {
    throw new Error(`state entry '${name}' holds ${entry.data.length} values, its shape [${shape.join(', ')}] needs ${size}`);
  }
  return entry.data instanceof Float32Array ? entry.data : Float32Array.from(entry.data as Float64Array);
}

/** Assigns the entry `name` to `variable` (same shape required). */
export function loadVariable(variable: tf.Variable, name: string, get: StateEntryGetter): void {
  const data = requireEntry(get, name, variable.shape);
  tf.tidy(() => variable.assign(tf.tensor(data, variable.shape, 'float32')));
}

/** A scalar counter (e.g. a step count) as a one-element F64 entry. */
export function scalarEntry(name: string, value: number): NamedArray {
  return { name, dtype: 'F64', shape: [1], data: Float64Array.of(value) };
}

/** Reads a one-element entry written by `scalarEntry`. */
export function requireScalar(get: StateEntryGetter, name: string): number {
  const entry = get(name);
  if (!entry) throw new Error(`state entry '${name}' is missing`);
  if (entry.data.length !== 1) throw new Error(`state entry '${name}' has ${entry.data.length} values, expected 1`);
  return Number(entry.data[0]);
}

export interface ExpectedEntry {
  name: string;
  shape: readonly number[];
  dtypes: readonly string[];
}

/**
 * Checks that every expected entry is present with its shape and an accepted dtype, before a layer
 * changes anything: a bad source then leaves the layer as it was.
 */
export function checkEntries(expected: readonly ExpectedEntry[], get: StateEntryGetter): void {
  for (const e of expected) {
    const entry = get(e.name);
    if (!entry) throw new Error(`state entry '${e.name}' is missing`);
    if (entry.shape.length !== e.shape.length || entry.shape.some((s, i) => s !== e.shape[i])) {
      throw new Error(`state entry '${e.name}' has shape [${entry.shape.join(', ')}], expected [${e.shape.join(', ')}]`);
    }
    if (!e.dtypes.includes(entry.dtype)) throw new Error(`state entry '${e.name}' has dtype ${entry.dtype}, expected ${e.dtypes.join(' or ')}`);
  }
}
