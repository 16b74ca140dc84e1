// The experiment commands end to end through the built CLI, on tiny runs: usage (metrics against a
// plain float64 computation from the recorded per-expert weights), report (self-contained HTML with
// the plots and the summary numbers, valid PNGs), sweep (table, plot, report; a restart skips finished
// runs; an interrupted sweep resumes to the same numbers) and bad input (one line, exit code 2).
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors } from '@peer/expert-store';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodePng, svgSize } from './plots/png.test-util.js';
import { writeRunReport } from './report/run-report.js';
import { loadRun } from './run/load-run.js';
import { errorLines, runCli, startCli, tempDir } from './cli-process.test-util.js';

let dir: string;
let cache: string;
let run: string;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

function expectValidPng(pngPath: string, svgPath: string): void {
  const png = decodePng(readFileSync(pngPath));
  const size = svgSize(readFileSync(svgPath, 'utf8'));
  expect([png.width, png.height]).toEqual([Math.round(2 * size.width), Math.round(2 * size.height)]);
  // not blank: some pixels are far from white
  let ink = 0;
  for (let i = 0; i < png.pixels.length; i += 4) if (png.pixels[i]! + png.pixels[i + 1]! + png.pixels[i + 2]! < 450) ink++;
  expect(ink).toBeGreaterThan(500);
}

function expectOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  const lines = errorLines(r.stderr);
  expect(r.code, r.stderr).toBe(2);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

beforeAll(async () => {
  dir = tempDir('peer-experiments-');
  cache = join(dir, 'cache');
  run = join(dir, 'tiny');
  const r = await runCli(['train', '--preset', 'tiny', '--data', 'moby-dick', '--steps', '30', '--out', run, '--set', `data.cacheDir=${cache}`], { cwd: dir });
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

interface UsageJson {
  step: number;
  tokens: number;
  layers: { block: number; kind: string; count: number; usage: number; unevenness: number; top1_share: number; retrievals: number; total_weight: number; histogram: { counts: number[]; zeros: number; below: number; above: number } }[];
  files: Record<string, string>;
}

describe('peer-train usage', () => {
  it("train's summary.json holds the usage of its final evaluation: the usage command's numbers over the same batches", async () => {
    const summary = readJson<{ val_tokens: number; usage: { block: number; kind: string; experts: number; usage: number; unevenness: number; dead_fraction: number }[] }>(join(run, 'summary.json'));
    // tiny: finalEvalBatches 4
    const r = await runCli(['usage', '--run', run, '--batches', '4', '--json'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout) as UsageJson;
    expect(printed.tokens).toBe(summary.val_tokens);
    expect(summary.usage).toHaveLength(1);
    const [s] = summary.usage;
    const l = printed.layers[0]!;
    expect(s).toEqual({ block: l.block, kind: 'peer', experts: 256, usage: l.usage, unevenness: l.unevenness, dead_fraction: l.histogram.zeros / 256 });
  });

  it("the paper's metrics equal a plain float64 computation from the recorded router weights", async () => {
    const r = await runCli(['usage', '--run', run, '--batches', '3', '--json'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout) as UsageJson;
    expect(readJson<UsageJson>(join(run, 'usage.json'))).toEqual(printed);
    expect(printed.step).toBe(30);
    const tokens = 3 * 4 * 32; // batches x tiny's batch size x sequence length
    expect(printed.tokens).toBe(tokens);
    expect(printed.layers).toHaveLength(1);
    const layer = printed.layers[0]!;
    expect(layer).toMatchObject({ block: 1, kind: 'peer', count: 256 });

    const file = readSafetensors(join(run, 'usage-weights.safetensors'));
    const w = Array.from(file.get('blocks.1.weights')!.data as Float64Array);
    const hits = Array.from(file.get('blocks.1.hits')!.data as Float64Array);
    expect(w).toHaveLength(256);
    // every token retrieves topK = 4 experts in each of 2 heads; softmax weights of a head sum to 1
    const heads = 2;
    const topK = 4;
    expect(hits.reduce((a, b) => a + b, 0)).toBe(tokens * heads * topK);
    expect(layer.retrievals).toBe(tokens * heads * topK);
    const total = w.reduce((a, b) => a + b, 0);
    expect(relErr(total, tokens * heads)).toBeLessThan(1e-5);
    w.forEach((wi, i) => expect(wi > 0).toBe(hits[i]! > 0));

    const n = w.length;
    const usage = w.filter((x) => x > 0).length / n;
    let sumZLogZ = 0;
    for (const x of w) if (x > 0) sumZLogZ += (x / total) * Math.log(x / total);
    const unevenness = Math.log(n) + sumZLogZ;
    const sorted = [...w].sort((a, b) => b - a);
    const top = sorted.slice(0, Math.ceil(n / 100)).reduce((a, b) => a + b, 0) / total;
    expect(layer.usage).toBe(usage);
    expect(relErr(layer.unevenness, unevenness)).toBeLessThan(1e-9);
    expect(relErr(layer.top1_share, top)).toBeLessThan(1e-9);
    expect(relErr(layer.total_weight, total)).toBeLessThan(1e-12);
    // a tiny model after 30 steps uses its experts unevenly but not degenerately
    expect(usage).toBeGreaterThan(0.05);
    expect(unevenness).toBeGreaterThan(0);
    const h = layer.histogram;
    expect(h.zeros).toBe(n - w.filter((x) => x > 0).length);
    expect(h.counts.reduce((a, b) => a + b, 0) + h.zeros + h.below + h.above).toBe(n);
    expectValidPng(join(run, 'usage.png'), join(run, 'usage.svg'));
  });
});

describe('peer-train report', () => {
  it('a run: self-contained HTML with the five plots, the summary numbers and the config; valid PNGs next to it', async () => {
    const r = await runCli(['report', run], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`report: ${join(run, 'report.html')}`);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    const images = [...html.matchAll(/src="data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
    expect(images).toHaveLength(5);
    const names = ['loss', 'lr', 'throughput', 'health', 'usage'];
    names.forEach((name, i) => {
      expect(images[i]).toBe(readFileSync(join(run, `${name}.svg`), 'utf8'));
      expectValidPng(join(run, `${name}.png`), join(run, `${name}.svg`));
    });
    expect(images[0]).toContain('tiny: peer: loss');
    expect(images[3]).toContain('expert health');
    expect(images[4]).toContain('expert usage');
    // nothing external: no scripts, stylesheets or remote images
    expect(html).not.toMatch(/<script|<link|src="http|url\(http/);
    const summary = readJson<{ val_loss: number; val_ppl: number; params_total: number; steps: number }>(join(run, 'summary.json'));
    expect(html).toContain(`<dd>${summary.val_loss.toFixed(4)}</dd>`);
    expect(html).toContain(`<dd>${summary.val_ppl.toFixed(3)}</dd>`);
    const usage = readJson<UsageJson>(join(run, 'usage.json'));
    expect(html).toContain(`<td class="num">${usage.layers[0]!.unevenness.toFixed(4)}</td>`);
    expect(html).toContain('&quot;numExperts&quot;: 256');
    // each evaluation of metrics.jsonl is a point of the validation curve, at its step and loss
    const evals = readFileSync(join(run, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { kind: string; step: number; val_loss?: number })
      .filter((m) => m.kind === 'eval');
    const points = [...images[0]!.matchAll(/aria-label="step: (\d+); cross-entropy \(nats\/token\): ([\d.]+); series: validation" role="graphics-symbol" aria-roledescription="point"/g)];
    expect(points.map((p) => Number(p[1]))).toEqual(evals.map((e) => e.step));
    points.forEach((p, i) => expect(relErr(Number(p[2]), evals[i]!.val_loss!)).toBeLessThan(1e-9));
    // expert health: a point per evaluation (tiny: every 10 steps, and the final one) at its usage and KL
    const health = readFileSync(join(run, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { kind: string; step: number; usage: number; unevenness: number; dead: number })
      .filter((m) => m.kind === 'health');
    expect(health.map((h) => h.step)).toEqual([10, 20, 30]);
    const usagePoints = [...images[3]!.matchAll(/aria-label="step: (\d+); experts used \(%\): ([\d.]+); layer: block 1 \(peer\)" role="graphics-symbol" aria-roledescription="point"/g)];
    expect(usagePoints.map((p) => Number(p[1]))).toEqual([10, 20, 30]);
    usagePoints.forEach((p, i) => expect(relErr(Number(p[2]), 100 * health[i]!.usage)).toBeLessThan(1e-9));
    const klPoints = [...images[3]!.matchAll(/aria-label="step: (\d+); unevenness \(KL to uniform, nats\): ([\d.]+); layer: block 1 \(peer\)" role="graphics-symbol" aria-roledescription="point"/g)];
    klPoints.forEach((p, i) => expect(relErr(Number(p[2]), health[i]!.unevenness)).toBeLessThan(1e-9));
    expect(klPoints).toHaveLength(3);
    expect(html).toContain(`<td class="num">${health[2]!.dead} of 256</td>`);
  });
});

describe('writeRunReport (the call at the end of training)', () => {
  it('measures usage on the model in memory, to the same numbers as the usage command', async () => {
    const before = readJson<UsageJson>(join(run, 'usage.json'));
    rmSync(join(run, 'usage.json'));
    const loaded = await loadRun(run);
    try {
      const result = await writeRunReport(run, { model: loaded.model, usageBatches: 3 });
      expect(result.htmlPath).toBe(join(run, 'report.html'));
    } finally {
      loaded.model.dispose();
    }
    const after = readJson<UsageJson>(join(run, 'usage.json'));
    expect(after.layers).toEqual(before.layers);
    expect([after.step, after.tokens]).toEqual([before.step, before.tokens]);
  });
});

const microSweep = (budget: number, methods: string[], sizes: object[]) => ({
  description: 'micro sweep for tests',
  sweep: {
    base: { extends: 'tiny', data: { corpus: 'moby-dick', cacheDir: '__CACHE__' }, train: { evalEvery: 0, finalEvalBatches: 2, checkpointEvery: 10, logEvery: 5 } },
    budgets: [budget],
    methods: Object.fromEntries(methods.map((m) => [m, {}])),
    sizes,
  },
});
const SIZES = [{ name: 'xs', config: { model: { dim: 16, heads: 2 } } }, { name: 's' }];
const BUDGET = 8e8;

function writeSweep(name: string, body: object): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(body).replace('__CACHE__', cache));
  return path;
}

interface CsvRow {
  [key: string]: string;
}
function readCsv(path: string): CsvRow[] {
  const [header, ...lines] = readFileSync(path, 'utf8').trimEnd().split('\n');
  const cols = header!.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i]!, v])));
}

describe('peer-train sweep', () => {
  let sweepDir: string;
  let configPath: string;

  it('2 methods x 2 sizes: every run trained and evaluated; CSV, Markdown, isoFLOP plot and report', async () => {
    sweepDir = join(dir, 'sweep');
    configPath = writeSweep('micro', microSweep(BUDGET, ['dense', 'peer'], SIZES));
    const r = await runCli(['sweep', '--config', configPath, '--out', sweepDir], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const rows = readCsv(join(sweepDir, 'summary.csv'));
    expect(rows.map((x) => `${x.method}-${x.size}`)).toEqual(['dense-xs', 'peer-xs', 'dense-s', 'peer-s']);
    for (const row of rows) {
      const summary = readJson<Record<string, number | string>>(join(sweepDir, row.run!, 'summary.json'));
      expect(row.status).toBe('done');
      expect(Number(row.budget)).toBe(BUDGET);
      expect(Number(row.val_loss)).toBe(summary.val_loss);
      expect(Number(row.val_ppl)).toBe(summary.val_ppl);
      expect(Number(row.val_bpb)).toBe(summary.val_bpb);
      expect(Number(row.params_total)).toBe(summary.params_total);
      expect(Number(row.params_active)).toBe(summary.params_active_per_token);
      expect(Number(row.steps)).toBe(summary.steps);
      expect(Number(row.tokens)).toBe(summary.tokens);
      // the isoFLOP budget decides the steps
      expect(Number(row.steps)).toBe(Math.floor(BUDGET / (3 * Number(row.flops_per_token) * 4 * 32)));
      expect(summary.ffw).toBe(row.method);
    }
    expect(rows.find((x) => x.size === 'xs')!.params_total).not.toBe(rows.find((x) => x.size === 's')!.params_total);
    const md = readFileSync(join(sweepDir, 'summary.md'), 'utf8');
    expect(md.split('\n').filter((l) => /^\| 8e8 \| (dense|peer) \| (xs|s) \|/.test(l))).toHaveLength(4);
    expect(r.stdout).toContain(md);
    const svg = readFileSync(join(sweepDir, 'isoflop.svg'), 'utf8');
    expect(svg.match(/aria-roledescription="point"/g)).toHaveLength(4);
    for (const row of rows) expect(svg).toContain(`val_loss: ${Number(row.val_loss).toFixed(4)}`);
    expectValidPng(join(sweepDir, 'isoflop.png'), join(sweepDir, 'isoflop.svg'));
    const html = readFileSync(join(sweepDir, 'report.html'), 'utf8');
    expect(html).toContain('data:image/svg+xml;base64,');
    for (const row of rows) expect(html).toContain(Number(row.val_loss).toFixed(4));
  }, 240_000);

  it('a restart skips the finished runs and changes nothing', async () => {
    const before = readFileSync(join(sweepDir, 'summary.csv'), 'utf8');
    const mtimes = readCsv(join(sweepDir, 'summary.csv')).map((x) => statSync(join(sweepDir, x.run!, 'summary.json')).mtimeMs);
    const r = await runCli(['sweep', '--config', configPath, '--out', sweepDir], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/^skip {2}8e8-/gm)).toHaveLength(4);
    expect(r.stderr).not.toMatch(/^start /m);
    expect(readFileSync(join(sweepDir, 'summary.csv'), 'utf8')).toBe(before);
    expect(readCsv(join(sweepDir, 'summary.csv')).map((x) => statSync(join(sweepDir, x.run!, 'summary.json')).mtimeMs)).toEqual(mtimes);
    // report DIR on the sweep folder rewrites the same table
    const rep = await runCli(['report', sweepDir], { cwd: dir });
    expect(rep.code, rep.stderr).toBe(0);
    expect(readFileSync(join(sweepDir, 'summary.csv'), 'utf8')).toBe(before);
  }, 120_000);

  it('an interrupted sweep resumes its unfinished run and ends with the same numbers', async () => {
    const out = join(dir, 'sweep-interrupted');
    const path = writeSweep('micro-dense', microSweep(BUDGET, ['dense'], [SIZES[0]!]));
    const child = startCli(['sweep', '--config', path, '--out', out], { cwd: dir });
    const manifest = join(out, 'runs', '8e8-dense-xs', 'checkpoint', 'manifest.json');
    const t0 = Date.now();
    while (!existsSync(manifest)) {
      if (Date.now() - t0 > 90_000) throw new Error('no checkpoint appeared');
      await new Promise((res) => setTimeout(res, 20));
    }
    child.kill('SIGINT');
    const stopped = await child.result;
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.stderr).toMatch(/stopping the sweep/);
    expect(existsSync(join(out, 'runs', '8e8-dense-xs', 'summary.json'))).toBe(false);
    expect(readCsv(join(out, 'summary.csv'))[0]!.status).toBe('interrupted');

    const resumed = await runCli(['sweep', '--config', path, '--out', out], { cwd: dir });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/start 8e8-dense-xs \[1\/1\]: resuming/);
    expect(readFileSync(join(out, 'logs', '8e8-dense-xs.log'), 'utf8')).toMatch(/resuming .* at step \d+ of/);
    const row = readCsv(join(out, 'summary.csv'))[0]!;
    const reference = readCsv(join(sweepDir, 'summary.csv')).find((x) => x.method === 'dense' && x.size === 'xs')!;
    expect(row.status).toBe('done');
    expect(relErr(Number(row.val_loss), Number(reference.val_loss))).toBeLessThan(1e-6);
    expect(row.steps).toBe(reference.steps);
  }, 180_000);

  it('bad input: one line, exit code 2, nothing overwritten', async () => {
    const noCheckpoint = join(dir, 'no-checkpoint');
    mkdirSync(noCheckpoint);
    copyFileSync(join(run, 'config.json'), join(noCheckpoint, 'config.json'));
    const notASweep = join(dir, 'not-a-sweep');
    mkdirSync(notASweep);
    writeFileSync(join(notASweep, 'notes.txt'), 'keep me');
    const badKey = writeSweep('bad-key', { sweep: { ...microSweep(BUDGET, ['dense'], SIZES).sweep, budget: 1 } });
    const changed = writeSweep('changed', microSweep(2 * BUDGET, ['dense', 'peer'], SIZES));
    const bigger = writeSweep('bigger', microSweep(BUDGET, ['dense', 'peer'], [...SIZES, { name: 'm' }]));
    const denseRun = join(sweepDir, 'runs', '8e8-dense-xs');
    const csvBefore = readFileSync(join(sweepDir, 'summary.csv'), 'utf8');
    const cases: [string[], RegExp][] = [
      [['usage', '--run', join(dir, 'nope')], /^peer-train: --run .*nope: no such folder$/],
      [['usage', '--run', noCheckpoint], /^peer-train: --run .*no-checkpoint has no checkpoint yet/],
      [['usage', '--run', denseRun], /^peer-train: .*8e8-dense-xs: the model has no sparse layer \(ffw dense\): there is no expert usage to measure$/],
      [['usage', '--run', run, '--batches', '0'], /^error: option '--batches <n>' argument '0' is invalid\. expected an integer >= 1, got '0'$/],
      [['report', join(dir, 'nope')], /^peer-train: report .*nope: no such folder$/],
      [['report', notASweep], /^peer-train: report .*not-a-sweep: not a run folder \(no config\.json\) nor a sweep folder \(no sweep\.json\)$/],
      [['sweep', '--config', badKey, '--out', join(dir, 'x1')], /^peer-train: invalid sweep config \(config file .*bad-key\.json\): unknown key 'budget'$/],
      [['sweep', '--config', configPath, '--out', notASweep], /^peer-train: --out .*not-a-sweep is not empty and holds no sweep/],
      [['sweep', '--config', changed, '--out', sweepDir], /^peer-train: --out .*sweep holds a sweep with a different config \(differs at budgets\)/],
      [['sweep', '--config', bigger, '--out', sweepDir], /^peer-train: --out .*sweep holds a sweep with a different config \(differs at sizes\); .*, or add --extend to add runs to it$/],
      [['sweep', '--config', changed, '--out', sweepDir, '--extend'], /^peer-train: --extend: --out .*sweep: run 8e8-dense-xs of the sweep is not in the new plan; /],
      [['sweep', '--preset', 'nope'], /^peer-train: unknown sweep preset 'nope'/],
      [['sweep', '--config', configPath, '--out', sweepDir, '--backend', 'cpu'], /^peer-train: sweep run 8e8-dense-xs: .* was started with a different config than this sweep plans \(differs at backend\)/],
      [['bench', 'layer', '--layer', 'mlp'], /^peer-train: bench layer: unknown --layer 'mlp': expected one of peer, dense, moe, moe-ec, pkm$/],
      [['bench', 'layer', '--layer', 'peer', '--experts', 'many'], /^error: option '--experts <n>' argument 'many' is invalid\. expected an integer >= 1, got 'many'$/],
      [['bench', 'layer', '--layer', 'dense', '--heads', '4'], /^peer-train: bench layer: --heads does not apply to --layer dense/],
      [['layer-io', '--weights', join(dir, 'w.safetensors'), '--input', join(dir, 'x.safetensors'), '--output', join(dir, 'y.safetensors')], /^peer-train: --weights .*w\.safetensors: no such file$/],
    ];
    // two at a time: each is a fresh node process
    for (let i = 0; i < cases.length; i += 2) {
      const batch = cases.slice(i, i + 2);
      const results = await Promise.all(batch.map(([args]) => runCli(args, { cwd: dir })));
      results.forEach((r, j) => expectOneLineError(r, batch[j]![1]));
    }
    expect(readFileSync(join(notASweep, 'notes.txt'), 'utf8')).toBe('keep me');
    expect(existsSync(join(dir, 'x1'))).toBe(false);
    expect(readFileSync(join(sweepDir, 'summary.csv'), 'utf8')).toBe(csvBefore);
    expect(existsSync(join(noCheckpoint, 'usage.json'))).toBe(false);
  }, 180_000);
});
