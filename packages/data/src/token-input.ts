// What the batchers accept as tokens: a typed array, a plain array, or any TokenSource (a TokenFile).
import { DataError } from './errors.js';
import { arrayTokenSource, type TokenArray, type TokenSource } from './token-source.js';

export type TokenInput = TokenSource | TokenArray | readonly number[];

export function toTokenSource(tokens: TokenInput): TokenSource {
  if (Array.isArray(tokens) || ArrayBuffer.isView(tokens)) return arrayTokenSource(tokens as TokenArray | readonly number[]);
  const source = tokens as TokenSource;
  if (typeof source?.read !== 'function' || !Number.isSafeInteger(source.numTokens)) {
    throw new DataError('tokens must be a typed array, an array of ids, or a TokenSource (e.g. a TokenFile)');
  }
  return source;
}

export function checkPositiveInt(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new DataError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
}
