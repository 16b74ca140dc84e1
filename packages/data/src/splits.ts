// Document-level train / validation / test splits. A document's split depends only on its text and
// the seed (a SHA-256 of both), not on its position, the other documents or the platform: the same
// corpus gives the same split on every machine, reordering documents changes nothing, adding a
// document moves no other one, and duplicated documents always land together (no train/test leak).
import { createHash } from 'node:crypto';
import { DataError } from './errors.js';

export type SplitName = 'train' | 'validation' | 'test';

export const SPLIT_NAMES: readonly SplitName[] = ['train', 'validation', 'test'];

export type SplitFractions = Record<SplitName, number>;

export const DEFAULT_FRACTIONS: Readonly<SplitFractions> = { train: 0.9, validation: 0.05, test: 0.05 };

const TWO_POW_21 = 2097152;
const TWO_POW_53 = 9007199254740992;

/** Fractions completed with the defaults' shape, checked: each in [0, 1], summing to 1. */
export function checkFractions(fractions: Partial<SplitFractions> = DEFAULT_FRACTIONS): SplitFractions {
  const out = { train: fractions.train ?? 0, validation: fractions.validation ?? 0, test: fractions.test ?? 0 };
  for (const key of Object.keys(fractions)) {
    if (!(SPLIT_NAMES as readonly string[]).includes(key)) {
      throw new DataError(`split fractions: unknown split ${JSON.stringify(key)} (expected ${SPLIT_NAMES.join(', ')})`);
    }
  }
  for (const name of SPLIT_NAMES) {
    const f = out[name];
    if (typeof f !== 'number' || !Number.isFinite(f) || f < 0 || f > 1) {
      throw new DataError(`split fraction ${name} must be a number in [0, 1], got ${JSON.stringify(f)}`);
    }
  }
  const sum = out.train + out.validation + out.test;
  if (Math.abs(sum - 1) > 1e-9) {
    throw new DataError(`split fractions must sum to 1, got ${JSON.stringify(out)} (sum ${sum})`);
  }
  return out;
}

export function checkSplitName(split: string): SplitName {
  if (!(SPLIT_NAMES as readonly string[]).includes(split)) {
    throw new DataError(`split must be one of ${SPLIT_NAMES.join(', ')}, got ${JSON.stringify(split)}`);
  }
  return split as SplitName;
}

export function checkSeed(seed: number, what = 'seed'): number {
  if (!Number.isSafeInteger(seed)) throw new DataError(`${what} must be a safe integer, got ${JSON.stringify(seed)}`);
  return seed;
}

/** A uniform number in [0, 1) determined by the seed and the document text (53 bits of SHA-256). */
export function documentUniform(text: string, seed: number): number {
  const digest = createHash('sha256').update(`peer-data split v1\0${seed}\0`).update(text, 'utf8').digest();
  const hi = digest.readUInt32BE(0); // bits 0-31
  const lo = digest.readUInt32BE(4) >>> 11; // bits 32-52
  return (hi * TWO_POW_21 + lo) / TWO_POW_53;
}

/** The split a document belongs to: `train` for u < f_train, then `validation`, then `test`. */
export function assignSplit(text: string, seed: number, fractions: SplitFractions): SplitName {
  const u = documentUniform(text, seed);
  if (u < fractions.train) return 'train';
  if (u < fractions.train + fractions.validation) return 'validation';
  if (fractions.test > 0) return 'test';
  // Rounding left a sliver above train + validation: give it to the last split that takes documents.
  return fractions.validation > 0 ? 'validation' : 'train';
}
