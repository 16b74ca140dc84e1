// The ablation presets of issue 19 validate and plan: every run's config resolves and builds, every
// run trains at least 100 steps, the ablated quantity takes the values the paper's figure needs,
// and one point of each has three seeds (the noise the differences are compared with).
import { describe, expect, it } from 'vitest';
import { ffwFacts } from './ffw-facts.js';
import { planSweep } from './plan.js';
import { loadSweep } from './sweep-config.js';

async function plan(preset: string) {
  const loaded = loadSweep({ preset });
  const { runs, resolved } = await planSweep(loaded);
  for (const r of runs) expect(r.steps, r.id).toBeGreaterThanOrEqual(100);
  const facts = runs.map((r) => ({ id: r.id, seed: r.seed, ...ffwFacts(resolved.get(r.id)!) }));
  return { loaded, runs, facts };
}

/** Ids of the runs that share a point (budget, method, size) with another run. */
const seeded = (runs: { id: string; seed?: number }[]) => runs.filter((r) => /-s\d+$/.test(r.id)).map((r) => r.id);

describe('ablation presets', () => {
  it('ablate-experts: N = 32^2 ... 1024^2 at h = 8, k = 16, one budget, one model size; 3 seeds of one point', async () => {
    const { loaded, runs, facts } = await plan('ablate-experts');
    expect(loaded.sweep.plot).toBe('experts');
    expect(loaded.sweep.budgets).toHaveLength(1);
    expect([...new Set(facts.map((f) => f.n_experts))]).toEqual([32, 64, 128, 256, 512, 1024].map((s) => s * s));
    expect(new Set(facts.map((f) => `${f.h}x${f.k} ${f.query_norm}`))).toEqual(new Set(['8x16 batch']));
    expect(seeded(runs)).toEqual(['2e12-peer-n128-s1', '2e12-peer-n128-s2', '2e12-peer-n128-s3']);
  }, 60_000);

  it('ablate-active: h*k = 32 ... 512, several (h, k) splits each, fixed N', async () => {
    const { loaded, facts } = await plan('ablate-active');
    expect(loaded.sweep.plot).toBe('active');
    expect(new Set(facts.map((f) => f.n_experts))).toEqual(new Set([128 * 128]));
    const splits = new Map<number, Set<number>>();
    for (const f of facts) {
      const hk = f.h! * f.k!;
      if (!splits.has(hk)) splits.set(hk, new Set());
      splits.get(hk)!.add(f.h!);
    }
    expect([...splits.keys()].sort((a, b) => a - b)).toEqual([32, 64, 128, 256, 512]);
    for (const [hk, heads] of splits) expect(heads.size, `h*k = ${hk}`).toBeGreaterThanOrEqual(2);
    expect(facts.filter((f) => f.seed !== undefined).map((f) => `${f.h}x${f.k} s${f.seed}`)).toEqual(['8x16 s1', '8x16 s2', '8x16 s3']);
  }, 60_000);

  it('ablate-query-norm: batch, none and layer at three N of Table 2', async () => {
    const { loaded, facts } = await plan('ablate-query-norm');
    expect(loaded.sweep.plot).toBe('query-norm');
    expect(new Set(facts.map((f) => f.query_norm))).toEqual(new Set(['batch', 'none', 'layer']));
    expect([...new Set(facts.map((f) => f.n_experts))]).toEqual([128 * 128, 512 * 512, 1024 * 1024]);
    for (const norm of ['batch', 'none', 'layer']) expect(facts.filter((f) => f.query_norm === norm && f.n_experts === 128 * 128).map((f) => f.seed)).toEqual([1, 2, 3]);
  }, 60_000);

  it('tune-baselines: the same trials for every method at one budget', async () => {
    const { loaded, runs, facts } = await plan('tune-baselines');
    expect(loaded.sweep.budgets).toHaveLength(1);
    const methods = Object.keys(loaded.sweep.methods);
    expect(methods).toEqual(['dense', 'moe', 'moe-ec', 'pkm', 'peer']);
    expect(runs).toHaveLength(methods.length * loaded.sweep.sizes.length);
    for (const m of methods) expect(runs.filter((r) => r.method === m).map((r) => r.size)).toEqual(['t-default', 't-lr', 't-table', 't-shape', 't-lr-high', 't-combined', 't-lr-max', 't-best-high', 't-edge']);
    const fact = (id: string) => facts.find((f) => f.id === id)!;
    expect(fact('8e11-pkm-t-shape').n_experts).toBe(64 * 64);
    expect([fact('8e11-peer-t-shape').h, fact('8e11-peer-t-shape').k]).toEqual([4, 32]);
    expect(fact('8e11-moe-t-table').n_experts).toBe(16);
    expect(fact('8e11-moe-ec-t-combined').n_experts).toBe(16);
  }, 60_000);
});
