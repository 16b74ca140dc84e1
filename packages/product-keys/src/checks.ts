// Argument checks shared by ProductKeys and retrieve. Each failure is one Error that names the
// argument, what was expected and the value received.
import * as tf from '@tensorflow/tfjs-core';
import { formatValue } from '@peer/backend';

/** Largest sqrt(N): expert indices i * sqrt(N) + j must fit in int32. */
export const MAX_SQRT_KEYS = 46340;

export function shapeText(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

export function checkInteger(where: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new Error(`${where}: ${name} must be an integer ${range}, got ${formatValue(value)}`);
  }
  return value;
}

/** sqrt(n) when n is a perfect square in [4, MAX_SQRT_KEYS^2]; throws otherwise. */
export function checkNumKeys(where: string, name: string, value: unknown): number {
  const max = MAX_SQRT_KEYS * MAX_SQRT_KEYS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 4 || value > max) {
    throw new Error(`${where}: ${name} must be a perfect square between 4 and ${max} (e.g. 1048576 = 1024^2), got ${formatValue(value)}`);
  }
  const root = Math.round(Math.sqrt(value));
  if (root * root !== value) {
    const below = Math.floor(Math.sqrt(value));
    throw new Error(
      `${where}: ${name} must be a perfect square (nearest: ${below * below} = ${below}^2, ${(below + 1) ** 2} = ${below + 1}^2), got ${value}`,
    );
  }
  return root;
}

export function checkTensor(where: string, name: string, value: unknown, rank: number, axes: string): tf.Tensor {
  if (!(value instanceof tf.Tensor)) throw new Error(`${where}: ${name} must be a float32 tensor ${axes}, got ${formatValue(value)}`);
  if (value.isDisposed) throw new Error(`${where}: ${name} is a disposed tensor`);
  if (value.dtype !== 'float32') {
    throw new Error(`${where}: ${name} must have dtype float32, got ${value.dtype} (shape ${shapeText(value.shape)})`);
  }
  if (value.rank !== rank) {
    throw new Error(`${where}: ${name} must have rank ${rank} ${axes}, got shape ${shapeText(value.shape)}`);
  }
  return value;
}

/** Throws unless `actual` equals `expected`, where a string entry in `expected` matches any size. */
export function checkShape(where: string, name: string, actual: readonly number[], expected: readonly (number | string)[]): void {
  const ok = actual.length === expected.length && expected.every((e, i) => typeof e === 'string' || e === actual[i]);
  if (!ok) throw new Error(`${where}: ${name} must have shape ${shapeText(expected)}, got ${shapeText(actual)}`);
}
