import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { collect, intArg, numberArg } from './cli-args.js';

/** Parses `args` with one `--n <n>` flag; returns the value or commander's one-line error. */
function parseFlag(parse: (value: string) => number, args: string[]): number | string {
  const program = new Command('p').exitOverride().configureOutput({ writeErr: () => {} }).option('--n <n>', 'a number', parse);
  try {
    program.parse(args, { from: 'user' });
    return program.opts<{ n: number }>().n;
  } catch (e) {
    return (e as Error).message;
  }
}

describe('intArg', () => {
  it('accepts integers at or above the minimum', () => {
    expect(parseFlag(intArg(0), ['--n', '0'])).toBe(0);
    expect(parseFlag(intArg(1), ['--n', '42'])).toBe(42);
  });

  it.each([
    ['', 0, "expected an integer >= 0, got ''"],
    ['  ', 0, "expected an integer >= 0, got '  '"],
    ['1.5', 1, "expected an integer >= 1, got '1.5'"],
    ['abc', 1, "expected an integer >= 1, got 'abc'"],
    ['0', 1, "expected an integer >= 1, got '0'"],
    ['-3', 0, "expected an integer >= 0, got '-3'"],
    ['1e300', 0, "expected an integer >= 0, got '1e300'"],
  ])('rejects %j (min %i) in one line naming the flag and the value', (value, min, reason) => {
    const message = parseFlag(intArg(min), ['--n', value]);
    expect(message).toBe(`error: option '--n <n>' argument '${value}' is invalid. ${reason}`);
  });
});

describe('numberArg', () => {
  it('accepts finite numbers that pass the check and rejects the rest, empty strings included', () => {
    const positive = numberArg((n) => n > 0, 'a positive number');
    expect(parseFlag(positive, ['--n', '2.5e3'])).toBe(2500);
    for (const value of ['', '0', 'x', 'Infinity']) {
      expect(parseFlag(positive, ['--n', value])).toBe(`error: option '--n <n>' argument '${value}' is invalid. expected a positive number, got '${value}'`);
    }
  });
});

describe('collect', () => {
  it('keeps repeated values in order', () => {
    expect(collect('b', collect('a'))).toEqual(['a', 'b']);
  });
});
