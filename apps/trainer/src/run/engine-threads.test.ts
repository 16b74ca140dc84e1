import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { engineThreads, machineCores, threadsPerJob } from './engine-threads.js';

describe('engine threads', () => {
  it('the flag wins over the config, which wins over every core', () => {
    expect(machineCores()).toBe(availableParallelism());
    expect(engineThreads(3, 5)).toBe(3);
    expect(engineThreads(undefined, 5)).toBe(5);
    expect(engineThreads(undefined, undefined)).toBe(availableParallelism());
  });

  it('a sweep divides the cores between its jobs, at least one thread each', () => {
    expect(threadsPerJob(1, 16)).toBe(16);
    expect(threadsPerJob(2, 16)).toBe(8);
    expect(threadsPerJob(3, 16)).toBe(5);
    expect(threadsPerJob(2, 2)).toBe(1);
    expect(threadsPerJob(4, 2)).toBe(1);
  });
});

describe('config engine.threads', () => {
  it('is optional (absent by default, so configs and their hashes stay as they were) and a whole number >= 1', async () => {
    const { resolveConfig } = await import('../config/resolve.js');
    expect(resolveConfig({ preset: 'tiny' }).config.engine).toBeUndefined();
    expect(resolveConfig({ preset: 'tiny', sets: ['engine.threads=3'] }).config.engine).toEqual({ threads: 3 });
    expect(() => resolveConfig({ preset: 'tiny', sets: ['engine.threads=0'] })).toThrow(/^invalid config: engine\.threads = 0: /);
    expect(() => resolveConfig({ preset: 'tiny', sets: ['engine.cores=2'] })).toThrow("invalid config: unknown key 'engine.cores'");
  });
});
