// Sweep configs: how each run's train config is assembled (merge order, ffw kind changes, the budget),
// what the planner derives from it (steps = floor(budget / FLOPs per step)), and the errors.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../errors.js';
import { planSweep } from './plan.js';
import { budgetLabel, loadSweep, mergeRunConfig, parseSweepConfig, runConfig, runId } from './sweep-config.js';

/** A run config, read loosely (the test checks its shape). */
type Loose = { model: { dim: number; ffw: unknown; seed?: number }; optim: { lr: number }; train: { flops?: number; steps?: number; evalEvery?: number; seed?: number } };
const loose = (x: unknown) => x as Loose;

const dir = mkdtempSync(join(tmpdir(), 'peer-sweep-config-'));
function sweepFile(name: string, body: unknown): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(body));
  return path;
}

describe('sweep config', () => {
  it('run config: base <- size <- method <- method at size, budget as train.flops', () => {
    const sweep = parseSweepConfig(
      {
        base: { extends: 'tiny', train: { steps: 99, evalEvery: 0 }, optim: { lr: 1e-3 } },
        budgets: [1e9],
        methods: { dense: {}, peer: { model: { ffw: { options: { topK: 2 } } } }, wide: { model: { ffw: { kind: 'dense', hidden: 96 } } } },
        sizes: [{ name: 'a', config: { model: { dim: 48, ffw: { hidden: 80 } }, optim: { lr: 2e-3 } }, methods: { peer: { model: { ffw: { options: { heads: 1 } } } } } }],
      },
      'test',
    );
    const size = sweep.sizes[0]!;
    const peer = loose(runConfig(sweep, 1e9, 'peer', size));
    // tiny is a PEER preset: its options stay, the method and the size add to them
    expect(peer.model.ffw).toEqual({ kind: 'peer', hidden: 80, options: { numExperts: 256, heads: 1, topK: 2, dimKey: 16 } });
    expect(peer.model.dim).toBe(48);
    expect(peer.optim.lr).toBe(2e-3);
    expect(peer.train.flops).toBe(1e9);
    expect(peer.train.steps).toBeUndefined();
    expect(peer.train.evalEvery).toBe(0);
    // 'dense' names its kind: PEER's options are dropped, the size's hidden width stays
    const dense = loose(runConfig(sweep, 1e9, 'dense', size));
    expect(dense.model.ffw).toEqual({ kind: 'dense', hidden: 80 });
    // a method that gives a kind and a hidden width overrides the size's
    expect(loose(runConfig(sweep, 1e9, 'wide', size)).model.ffw).toEqual({ kind: 'dense', hidden: 96 });
  });

  it('mergeRunConfig merges options of the same kind', () => {
    const base = { model: { ffw: { kind: 'peer', options: { heads: 2, topK: 4 } } } };
    expect(mergeRunConfig(base, { model: { ffw: { kind: 'peer', options: { topK: 8 } } } })).toEqual({ model: { ffw: { kind: 'peer', options: { heads: 2, topK: 8 } } } });
    expect(mergeRunConfig(base, { model: { ffw: { kind: 'pkm', options: { topK: 8 } } } })).toEqual({ model: { ffw: { kind: 'pkm', options: { topK: 8 } } } });
  });

  it('budget labels', () => {
    expect([1e14, 2.5e12, 6e8, 3].map(budgetLabel)).toEqual(['1e14', '2.5e12', '6e8', '3e0']);
  });

  it('bad sweep configs: one error naming the key and the value', () => {
    const ok = { budgets: [1e9], methods: { dense: {} }, sizes: [{ name: 's' }] };
    const bad = (patch: object) => () => parseSweepConfig({ ...ok, ...patch }, 'x.json');
    expect(bad({ budget: [1] })).toThrow(/^invalid sweep config \(x\.json\): unknown key 'budget'$/);
    expect(bad({ budgets: [] })).toThrow(/budgets = \[\]: Too small/);
    expect(bad({ budgets: [-1] })).toThrow(/budgets\.0 = -1: /);
    expect(bad({ budgets: [1e9, 1e9] })).toThrow(/budgets\.1 = 1000000000: repeated budget/);
    expect(bad({ methods: {} })).toThrow(/methods = \{\}: name at least one method/);
    expect(bad({ methods: { 'a b': {} } })).toThrow(/methods/);
    expect(bad({ sizes: [{ name: 's' }, { name: 's' }] })).toThrow(/sizes\.1\.name = "s": repeated size name/);
    expect(bad({ sizes: [{ name: 's', methods: { peer: {} } }] })).toThrow(/sizes\.0\.methods\.peer = "peer": not one of the sweep's methods \(dense\)/);
    expect(bad({ sizes: [{ name: 's', size: 1 }] })).toThrow(/unknown key 'sizes\.0\.size'/);
    expect(() => loadSweep({ preset: 'nope' })).toThrow(/unknown sweep preset 'nope'/);
    expect(() => loadSweep({ preset: 'dense' })).toThrow(/preset dense is not a sweep config: it has no "sweep" section/);
    expect(() => loadSweep({ config: join(dir, 'missing.json') })).toThrow(/sweep config file not found: .*missing\.json/);
    expect(() => loadSweep({ config: sweepFile('bad', { sweep: { ...ok, sizes: 3 } }) })).toThrow(UsageError);
  });

  it('plans the quick-sweep preset: 15 runs, steps = floor(budget / (3 x FLOPs/token x tokens/step))', async () => {
    const loaded = loadSweep({ preset: 'quick-sweep' });
    expect(loaded.sweep.budgets).toHaveLength(1);
    expect(Object.keys(loaded.sweep.methods)).toEqual(['dense', 'moe', 'moe-ec', 'pkm', 'peer']);
    expect(loaded.sweep.sizes).toHaveLength(3);
    const { runs, configs } = await planSweep(loaded);
    expect(runs).toHaveLength(15);
    const budget = loaded.sweep.budgets[0]!;
    for (const r of runs) {
      expect(r.id).toBe(`${budgetLabel(budget)}-${r.method}-${r.size}`);
      expect(r.ffw).toBe(r.method);
      expect(r.steps).toBe(Math.floor(budget / (3 * r.flopsPerToken * r.tokensPerStep)));
      expect(r.steps).toBeGreaterThanOrEqual(200);
      expect(r.paramsActive).toBeLessThanOrEqual(r.paramsTotal);
      expect(loose(configs.get(r.id)).train.flops).toBe(budget);
    }
    // sizes grow
    const denseParams = ['s', 'm', 'l'].map((s) => runs.find((r) => r.size === s && r.method === 'dense')!.paramsTotal);
    expect(denseParams[1]).toBeGreaterThan(denseParams[0]!);
    expect(denseParams[2]).toBeGreaterThan(denseParams[1]!);
  });

  it('a budget below one step of some run names that run', async () => {
    const path = sweepFile('small-budget', { sweep: { base: { extends: 'tiny' }, budgets: [1e6], methods: { dense: {} }, sizes: [{ name: 's' }] } });
    await expect(planSweep(loadSweep({ config: path }))).rejects.toThrow(/^sweep run 1e6-dense-s \(budget 1e6, method dense, size s\): train\.flops = 1\.000e\+6 is less than one training step/);
  });
});

describe('sweep seeds and plots', () => {
  const ok = { base: { extends: 'tiny' }, budgets: [1e10], methods: { peer: {} }, sizes: [{ name: 's' }] };

  it('seeds and plot are optional without defaults: a sweep record from before them compares equal', () => {
    const parsed = parseSweepConfig(ok, 'x');
    expect('seeds' in parsed).toBe(false);
    expect('plot' in parsed).toBe(false);
    const withBoth = parseSweepConfig({ ...ok, seeds: [3, 1], plot: 'active' }, 'x');
    expect(withBoth.seeds).toEqual([3, 1]);
    expect(withBoth.plot).toBe('active');
    expect(parseSweepConfig({ ...ok, sizes: [{ name: 's', seeds: [7] }] }, 'x').sizes[0]!.seeds).toEqual([7]);
  });

  it('a seed sets train.seed and model.seed (as train --seed); without one the base seed stays', () => {
    const sweep = parseSweepConfig(ok, 'x');
    const seeded = loose(runConfig(sweep, 1e10, 'peer', sweep.sizes[0]!, 5));
    expect([seeded.train.seed, seeded.model.seed, seeded.train.flops]).toEqual([5, 5, 1e10]);
    const plain = loose(runConfig(sweep, 1e10, 'peer', sweep.sizes[0]!));
    expect([plain.train.seed, plain.model.seed]).toEqual([undefined, undefined]);
  });

  it('run ids: -s<seed> only when the point has several seeds', () => {
    expect(runId('1e10', 'peer', 's', undefined, 1)).toBe('1e10-peer-s');
    expect(runId('1e10', 'peer', 's', 4, 1)).toBe('1e10-peer-s');
    expect(runId('1e10', 'peer', 's', 4, 3)).toBe('1e10-peer-s-s4');
  });

  it('bad seeds and plots: one error naming the key and the value', () => {
    const bad = (patch: object) => () => parseSweepConfig({ ...ok, ...patch }, 'x.json');
    expect(bad({ seeds: [1, 2, 1] })).toThrow(/^invalid sweep config \(x\.json\): seeds\.2 = 1: repeated seed$/);
    expect(bad({ seeds: [] })).toThrow(/^invalid sweep config \(x\.json\): seeds = \[\]: Too small/);
    expect(bad({ seeds: [1.5] })).toThrow(/^invalid sweep config \(x\.json\): seeds\.0 = 1\.5: /);
    expect(bad({ seeds: [-1] })).toThrow(/^invalid sweep config \(x\.json\): seeds\.0 = -1: /);
    expect(bad({ seeds: 3 })).toThrow(/^invalid sweep config \(x\.json\): seeds = 3: /);
    expect(bad({ plot: 'isoflops' })).toThrow(/^invalid sweep config \(x\.json\): plot = "isoflops": .*isoflop.*experts.*active.*query-norm/);
    expect(bad({ sizes: [{ name: 's', seeds: [2, 2] }] })).toThrow(/^invalid sweep config \(x\.json\): sizes\.0\.seeds\.1 = 2: repeated seed$/);
  });

  it('plans one run per seed: ids, seeds and configs; a size with its own seeds overrides the sweep', async () => {
    const path = sweepFile('seeds', { sweep: { ...ok, seeds: [1, 2], sizes: [{ name: 'a' }, { name: 'b', seeds: [9] }] } });
    const { runs, configs, resolved } = await planSweep(loadSweep({ config: path }));
    expect(runs.map((r) => r.id)).toEqual(['1e10-peer-a-s1', '1e10-peer-a-s2', '1e10-peer-b']);
    expect(runs.map((r) => r.seed)).toEqual([1, 2, 9]);
    expect(runs.map((r) => r.dir)).toEqual(['runs/1e10-peer-a-s1', 'runs/1e10-peer-a-s2', 'runs/1e10-peer-b']);
    for (const r of runs) {
      expect(resolved.get(r.id)!.train.seed).toBe(r.seed);
      expect(resolved.get(r.id)!.model.seed).toBe(r.seed);
      expect(loose(configs.get(r.id)).train.seed).toBe(r.seed);
    }
    // the seeds share everything else: the same plan numbers, different config hashes
    expect(runs[1]!.steps).toBe(runs[0]!.steps);
    expect(runs[1]!.configHash).not.toBe(runs[0]!.configHash);
    // a sweep without seeds plans as before: no seed field, no suffix
    const plain = await planSweep(loadSweep({ config: sweepFile('plain', { sweep: ok }) }));
    expect(plain.runs.map((r) => r.id)).toEqual(['1e10-peer-s']);
    expect('seed' in plain.runs[0]!).toBe(false);
  });
});
