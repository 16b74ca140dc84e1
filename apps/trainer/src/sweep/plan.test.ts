// Extending a sweep folder (`sweep --extend`): a new sweep config is accepted only when its plan keeps
// every run of the folder's record with the same config; a refusal names the run and writes nothing.
// No training: the folders are planned and written, a finished run is a run folder with a summary.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sweepCommand } from '../commands/sweep.js';
import type { JsonObject } from '../config/overrides.js';
import { configToJson } from '../config/resolve.js';
import { UsageError } from '../errors.js';
import { RUN_FILES } from '../run/run-folder.js';
import { assertExtends, assertSameSweep, checkSweepFolder, extensionProblem, planSweep, SWEEP_FILE, writeSweepFolder, type SweepRecord } from './plan.js';
import { loadSweep } from './sweep-config.js';

const root = mkdtempSync(join(tmpdir(), 'peer-sweep-extend-'));
const first = { base: { extends: 'tiny' }, budgets: [1e10], methods: { dense: {} }, sizes: [{ name: 's' }] };

function sweepFile(name: string, sweep: unknown): string {
  const path = join(root, `${name}.json`);
  writeFileSync(path, JSON.stringify({ sweep }));
  return path;
}

/** A sweep folder of `first` whose only run is finished (it has a summary). */
async function finishedSweep(name: string): Promise<{ dir: string; record: SweepRecord; sweepJson: string }> {
  const dir = join(root, name);
  const loaded = loadSweep({ config: sweepFile(`${name}-first`, first) });
  const record = writeSweepFolder(dir, loaded, await planSweep(loaded), undefined);
  mkdirSync(join(dir, 'runs', '1e10-dense-s'), { recursive: true });
  writeFileSync(join(dir, 'runs', '1e10-dense-s', RUN_FILES.summary), '{}\n');
  return { dir, record, sweepJson: readFileSync(join(dir, SWEEP_FILE), 'utf8') };
}

function withoutDescription(text: string): Record<string, unknown> {
  const raw = JSON.parse(text) as Record<string, unknown>;
  delete raw.description;
  return raw;
}

describe('sweep --extend', () => {
  it('accepts a plan that keeps every run: sweep.json gets the new config and all runs, createdAt stays', async () => {
    const { dir, record } = await finishedSweep('superset');
    const oldConfigFile = readFileSync(join(dir, 'configs', '1e10-dense-s.json'), 'utf8');
    const loaded = loadSweep({ config: sweepFile('superset-more', { ...first, budgets: [1e10, 2e10], methods: { dense: {}, peer: {} } }) });
    const plan = await planSweep(loaded);
    const existing = checkSweepFolder(dir)!;
    expect(extensionProblem(dir, existing, plan)).toBeUndefined();
    const extended = writeSweepFolder(dir, loaded, plan, existing, { extend: true });
    expect(extended.runs.map((r) => r.id)).toEqual(['1e10-dense-s', '1e10-peer-s', '2e10-dense-s', '2e10-peer-s']);
    // the old run is planned exactly as before (same config, same steps)
    expect(extended.runs[0]).toEqual(record.runs[0]);
    const reread = JSON.parse(readFileSync(join(dir, SWEEP_FILE), 'utf8')) as SweepRecord;
    expect(reread.createdAt).toBe(record.createdAt);
    expect(reread.sweep.budgets).toEqual([1e10, 2e10]);
    expect(Object.keys(reread.sweep.methods)).toEqual(['dense', 'peer']);
    expect(reread.runs.map((r) => r.id)).toEqual(extended.runs.map((r) => r.id));
    // the old run's train config is the same (its description names the new sweep file: not part of the config)
    expect(withoutDescription(readFileSync(join(dir, 'configs', '1e10-dense-s.json'), 'utf8'))).toEqual(withoutDescription(oldConfigFile));
  });

  it('refuses a plan without one of the runs, naming it; nothing is written', async () => {
    const { dir, sweepJson } = await finishedSweep('removal');
    const loaded = loadSweep({ config: sweepFile('removal-other', { ...first, methods: { peer: {} } }) });
    const plan = await planSweep(loaded);
    const existing = checkSweepFolder(dir)!;
    expect(extensionProblem(dir, existing, plan)).toBe('run 1e10-dense-s of the sweep is not in the new plan');
    expect(() => writeSweepFolder(dir, loaded, plan, existing, { extend: true })).toThrow(
      `--extend: --out ${dir}: run 1e10-dense-s of the sweep is not in the new plan; an extended sweep must keep every run it has, with the same config`,
    );
    expect(readFileSync(join(dir, SWEEP_FILE), 'utf8')).toBe(sweepJson);
  });

  it('refuses a plan that changes a run config, naming the run and the first differing path; nothing is written', async () => {
    const { dir, sweepJson } = await finishedSweep('changed');
    const oldConfigFile = readFileSync(join(dir, 'configs', '1e10-dense-s.json'), 'utf8');
    const loaded = loadSweep({ config: sweepFile('changed-lr', { ...first, sizes: [{ name: 's', config: { optim: { lr: 0.0123 } } }, { name: 't' }] }) });
    const plan = await planSweep(loaded);
    const existing = checkSweepFolder(dir)!;
    expect(() => assertExtends(dir, existing, plan)).toThrow(
      /^--extend: --out .*changed: run 1e10-dense-s of the sweep is planned with a different config \(differs at optim\.lr\); an extended sweep must keep/,
    );
    expect(() => writeSweepFolder(dir, loaded, plan, existing, { extend: true })).toThrow(/run 1e10-dense-s .*differs at optim\.lr/);
    expect(readFileSync(join(dir, SWEEP_FILE), 'utf8')).toBe(sweepJson);
    expect(readFileSync(join(dir, 'configs', '1e10-dense-s.json'), 'utf8')).toBe(oldConfigFile);
  });

  it("a started run is compared by its run folder's config (what it trains with), not its config file", async () => {
    const { dir } = await finishedSweep('started');
    const loaded = loadSweep({ config: sweepFile('started-more', { ...first, methods: { dense: {}, peer: {} } }) });
    const plan = await planSweep(loaded);
    const existing = checkSweepFolder(dir)!;
    const started = configToJson(plan.resolved.get('1e10-dense-s')!) as JsonObject;
    const runConfigFile = join(dir, 'runs', '1e10-dense-s', RUN_FILES.config);
    writeFileSync(runConfigFile, JSON.stringify({ config: started }));
    expect(extensionProblem(dir, existing, plan)).toBeUndefined();
    writeFileSync(runConfigFile, JSON.stringify({ config: { ...started, optim: { ...(started.optim as JsonObject), lr: 0.5 } } }));
    expect(extensionProblem(dir, existing, plan)).toBe('run 1e10-dense-s of the sweep is planned with a different config (differs at optim.lr)');
  });

  it('without --extend the error is unchanged; it suggests --extend only when the plan keeps every run', async () => {
    const { dir, sweepJson } = await finishedSweep('no-flag');
    const unchanged = `--out ${dir} holds a sweep with a different config (differs at sizes); choose another --out, or rerun with the config it was started with`;
    const existing = checkSweepFolder(dir)!;
    const superset = sweepFile('no-flag-superset', { ...first, sizes: [{ name: 's' }, { name: 't', config: { model: { dim: 48 } } }] });
    const dropped = sweepFile('no-flag-dropped', { ...first, sizes: [{ name: 't', config: { model: { dim: 48 } } }] });
    expect(() => assertSameSweep(dir, existing, loadSweep({ config: dropped }))).toThrow(new UsageError(unchanged));
    const quiet = { log: () => undefined, print: () => undefined };
    await expect(sweepCommand({ config: dropped, out: dir, ...quiet })).rejects.toThrow(new UsageError(unchanged));
    await expect(sweepCommand({ config: superset, out: dir, ...quiet })).rejects.toThrow(new UsageError(`${unchanged}, or add --extend to add runs to it`));
    await expect(sweepCommand({ config: dropped, out: dir, extend: true, ...quiet })).rejects.toThrow(/^--extend: .*run 1e10-dense-s of the sweep is not in the new plan/);
    expect(readFileSync(join(dir, SWEEP_FILE), 'utf8')).toBe(sweepJson);
  });

  it('--dry-run --extend prints the old runs as finished and the new ones as new, and writes nothing', async () => {
    const { dir, sweepJson } = await finishedSweep('dry-run');
    const lines: string[] = [];
    const superset = sweepFile('dry-run-superset', { ...first, methods: { dense: {}, peer: {} } });
    const result = await sweepCommand({ config: superset, out: dir, extend: true, dryRun: true, log: (l) => lines.push(l), print: () => undefined });
    expect(result.runs.map((r) => r.id)).toEqual(['1e10-dense-s', '1e10-peer-s']);
    const text = lines.join('\n');
    expect(text).toMatch(/= 2 runs in .*dry-run \(extending: 1 new run\(s\)\)/);
    expect(text).toMatch(/^1e10-dense-s .* finished$/m);
    expect(text).toMatch(/^1e10-peer-s .* new$/m);
    expect(readFileSync(join(dir, SWEEP_FILE), 'utf8')).toBe(sweepJson);
  });
});
