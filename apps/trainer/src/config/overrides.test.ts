import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { deepMerge, diffPaths, parseSetArg, parseSetValue, setPath } from './overrides.js';

describe('parseSetValue', () => {
  it('reads numbers, booleans, null, JSON and plain strings', () => {
    expect(parseSetValue('3', 'k')).toBe(3);
    expect(parseSetValue('-2.5', 'k')).toBe(-2.5);
    expect(parseSetValue('1e-3', 'k')).toBe(0.001);
    expect(parseSetValue('6e18', 'k')).toBe(6e18);
    expect(parseSetValue('.5', 'k')).toBe(0.5);
    expect(parseSetValue('true', 'k')).toBe(true);
    expect(parseSetValue('false', 'k')).toBe(false);
    expect(parseSetValue('null', 'k')).toBe(null);
    expect(parseSetValue('[1,2]', 'k')).toEqual([1, 2]);
    expect(parseSetValue('{"a":1}', 'k')).toEqual({ a: 1 });
    expect(parseSetValue('"42"', 'k')).toBe('42');
    expect(parseSetValue('peer', 'k')).toBe('peer');
    expect(parseSetValue('middle', 'k')).toBe('middle');
    // not numbers: versions, hex, paths
    expect(parseSetValue('1.2.3', 'k')).toBe('1.2.3');
    expect(parseSetValue('./data/x.txt', 'k')).toBe('./data/x.txt');
  });

  it('names the key when JSON is broken', () => {
    expect(() => parseSetValue('[1,', 'model.sparseBlocks')).toThrow(UsageError);
    expect(() => parseSetValue('[1,', 'model.sparseBlocks')).toThrow(/--set model.sparseBlocks: value \[1, is not valid JSON/);
  });
});

describe('parseSetArg / setPath', () => {
  it('splits key paths and writes nested values without touching the input', () => {
    const { path, value } = parseSetArg('optim.lr=3e-4');
    expect(path).toEqual(['optim', 'lr']);
    const base = { optim: { lr: 1, beta1: 0.9 } };
    const out = setPath(base, path, value);
    expect(out).toEqual({ optim: { lr: 3e-4, beta1: 0.9 } });
    expect(base.optim.lr).toBe(1);
    expect(setPath({}, ['model', 'ffw', 'hidden'], 8)).toEqual({ model: { ffw: { hidden: 8 } } });
    // values may contain '='
    expect(parseSetArg('data.corpus=a=b').value).toBe('a=b');
  });

  it('rejects malformed arguments and paths through non-objects, naming them', () => {
    expect(() => parseSetArg('optim.lr')).toThrow(/--set expects key.path=value, got 'optim.lr'/);
    expect(() => parseSetArg('=3')).toThrow(UsageError);
    expect(() => parseSetArg('optim..lr=3')).toThrow(/'optim..lr' is not a config key/);
    expect(() => setPath({ optim: { lr: 1 } }, ['optim', 'lr', 'x'], 2)).toThrow(/--set optim.lr.x: 'optim.lr' is 1, not a group/);
  });
});

describe('deepMerge / diffPaths', () => {
  it('merges objects key by key and replaces arrays and scalars', () => {
    const base = { a: { b: 1, c: [1, 2] }, d: 'x' };
    expect(deepMerge(base, { a: { c: [3] }, e: true })).toEqual({ a: { b: 1, c: [3] }, d: 'x', e: true });
    expect(base.a.c).toEqual([1, 2]);
  });

  it('lists the dotted paths that differ', () => {
    expect(diffPaths({ a: { b: 1, c: [1] }, d: 2 }, { a: { b: 2, c: [1] }, d: 2, e: 1 })).toEqual(['a.b', 'e']);
    expect(diffPaths({ a: 1 }, { a: 1 })).toEqual([]);
  });
});
