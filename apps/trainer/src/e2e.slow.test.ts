// End to end through the built CLI: train a tiny PEER model, checkpoint, evaluate, generate; two identical
// runs give identical metrics; a run killed (SIGKILL) or interrupted (SIGINT) and resumed ends where
// the uninterrupted run ends; bad checkpoints and configs are refused without touching anything.
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli, startCli, tempDir } from './cli-process.test-util.js';
import { checkpointStep, killAfterCheckpoint, numbersOf, readJson, runMetrics, tinyTrainArgs, waitFor, type MetricRecord } from './cli-run.test-util.js';
import { eventFiles, readScalars } from './tensorboard/event-file.js';

let dir: string;
let cache: string;

// 120 steps of the tiny model (a few seconds), checkpoints every 10 steps.
const STEPS = 120;
const trainArgs = () => tinyTrainArgs(STEPS, 40, cache);

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
/** The TensorBoard series `tag` of a run as [step, value] pairs. */
const tbSeries = (run: string, tag: string) => readScalars(join(run, 'tb')).get(tag) ?? [];
/** metrics.jsonl's `field` of records of `kind` as [step, float32 value] pairs: what TensorBoard should hold. */
const metricSeries = (run: string, kind: MetricRecord['kind'], field: string, block?: number) =>
  runMetrics(run)
    .filter((x) => x.kind === kind && (block === undefined || x.block === block) && typeof x[field] === 'number')
    .map((x) => [x.step, Math.fround(x[field] as number)]);

interface Summary {
  [key: string]: number | string | null;
}

let runA: string;
let summaryA: Summary;

beforeAll(async () => {
  dir = tempDir();
  cache = join(dir, 'cache');
  runA = join(dir, 'a');
  const r = await runCli(['train', ...trainArgs(), '--out', runA], { cwd: dir });
  expect(r.code, r.stderr).toBe(0);
  summaryA = readJson<Summary>(join(runA, 'summary.json'));
}, 120_000);

describe('peer-train end to end (tiny PEER model)', () => {
  it('writes the run folder: resolved config, metrics, checkpoint, summary', () => {
    const record = readJson<{
      config: { model: { dim: number; ffw: { kind: string } }; train: { steps: number } };
      versions: Record<string, string>;
      backend: { name: string };
      derived: { steps: number; flopsPerToken: number; params: { total: number; activePerToken: number } };
    }>(
      join(runA, 'config.json'),
    );
    expect(record.config.model.dim).toBe(32);
    expect(record.config.model.ffw.kind).toBe('peer');
    expect(record.config.train.steps).toBe(STEPS);
    expect(record.versions['@peer/model']).toMatch(/^\d+\.\d+\.\d+/);
    expect(record.versions['@tensorflow/tfjs-core']).toBe('4.22.0');
    expect(record.backend.name).toBe(summaryA.backend);
    // hand-counted in flops.test.ts
    expect(record.derived).toMatchObject({ steps: STEPS, flopsPerToken: 56352 });

    const m = runMetrics(runA);
    const train = m.filter((x) => x.kind === 'train');
    expect(train.map((x) => x.step)).toEqual(Array.from({ length: STEPS / 5 }, (_, i) => 5 * (i + 1)));
    expect(m.filter((x) => x.kind === 'eval').map((x) => x.step)).toEqual([40, 80, 120]);
    for (const x of train) {
      expect(x.tokens).toBe(x.step * 4 * 32);
      expect(Number.isFinite(x.loss)).toBe(true);
      expect(x.tokens_per_s as number).toBeGreaterThan(0);
    }
    // it learns: from about ln 256 = 5.55 nats down
    expect(train[0]!.loss as number).toBeGreaterThan(4.8);
    expect(train.at(-1)!.loss as number).toBeLessThan(3.6);
    expect(checkpointStep(runA)).toBe(STEPS);

    const s = summaryA;
    expect(s).toMatchObject({ ffw: 'peer', steps: STEPS, tokens: STEPS * 128, flops_per_token: 56352, flops: 3 * 56352 * STEPS * 128, seed: 1337 });
    expect(s.params_total).toBe(record.derived.params.total);
    expect(s.params_active_per_token).toBe(record.derived.params.activePerToken);
    expect(s.params_active_per_token as number).toBeLessThan(s.params_total as number);
    const final = m.at(-1)!;
    expect(final).toMatchObject({ kind: 'eval', step: STEPS, val_loss: s.val_loss });
    expect(s.val_ppl as number).toBeCloseTo(Math.exp(s.val_loss as number), 10);
    // byte tokenizer: one token is one byte, so bits per byte = nats per token / ln 2
    expect(s.val_bpb as number).toBeCloseTo((s.val_loss as number) / Math.LN2, 10);
    expect(s.wall_seconds as number).toBeGreaterThan(0);

    // expert health at each evaluation: the PEER layer of block 1, over the steps since the last one
    const health = m.filter((x) => x.kind === 'health');
    expect(health.map((x) => [x.step, x.since_step, x.block, x.layer, x.experts])).toEqual([
      [40, 0, 1, 'peer', 256],
      [80, 40, 1, 'peer', 256],
      [120, 80, 1, 'peer', 256],
    ]);
    for (const x of health) {
      expect(x.retrievals).toBe(40 * 4 * 32 * 2 * 4);
      expect(x.dead).toBe(256 - Math.round((x.usage as number) * 256));
      expect(x.unevenness as number).toBeGreaterThan(0);
      expect(x.head_overlap as number).toBeGreaterThanOrEqual(0);
    }

    // TensorBoard: one events file in tb/ holding the same numbers as metrics.jsonl
    expect(eventFiles(join(runA, 'tb'))).toHaveLength(1);
    expect(tbSeries(runA, 'train/loss')).toEqual(metricSeries(runA, 'train', 'loss'));
    expect(tbSeries(runA, 'train/lr')).toEqual(metricSeries(runA, 'train', 'lr'));
    expect(tbSeries(runA, 'train/grad_norm')).toEqual(metricSeries(runA, 'train', 'grad_norm'));
    expect(tbSeries(runA, 'perf/tokens_per_s')).toEqual(metricSeries(runA, 'train', 'tokens_per_s'));
    expect(tbSeries(runA, 'perf/mfu')).toEqual(metricSeries(runA, 'train', 'mfu'));
    expect(tbSeries(runA, 'val/loss')).toEqual(metricSeries(runA, 'eval', 'val_loss'));
    for (const field of ['usage', 'unevenness', 'dead', 'head_overlap']) {
      expect(tbSeries(runA, `experts/block1/${field}`)).toEqual(metricSeries(runA, 'health', field, 1));
    }
  });

  it('eval reproduces the final validation loss and scores other splits; generate continues a prompt', async () => {
    const e = await runCli(['eval', '--run', runA, '--batches', '4', '--json'], { cwd: dir });
    expect(e.code, e.stderr).toBe(0);
    const report = JSON.parse(e.stdout) as { loss: number; perplexity: number; bitsPerByte: number; tokens: number; step: number; split: string };
    expect(report).toMatchObject({ step: STEPS, split: 'validation', tokens: 4 * 4 * 32 });
    expect(relErr(report.loss, summaryA.val_loss as number)).toBeLessThan(1e-6);

    const t = await runCli(['eval', '--run', runA, '--split', 'test', '--batches', '2', '--json'], { cwd: dir });
    expect(t.code, t.stderr).toBe(0);
    const test = JSON.parse(t.stdout) as { loss: number; split: string };
    expect(test.split).toBe('test');
    expect(test.loss).toBeGreaterThan(1);
    expect(test.loss).toBeLessThan(4);

    // another corpus is scored whole
    const other = join(dir, 'other-corpus.txt');
    writeFileSync(other, 'It was the best of times, it was the worst of times, it was the age of wisdom. '.repeat(40));
    const o = await runCli(['eval', '--run', runA, '--data', other, '--json'], { cwd: dir });
    expect(o.code, o.stderr).toBe(0);
    const whole = JSON.parse(o.stdout) as { loss: number; bitsPerByte: number; tokens: number; split: string };
    expect(whole.split).toBe('all');
    // 3,160 bytes: floor(3159 / 32) = 98 windows of 32 targets
    expect(whole.tokens).toBe(98 * 32);
    expect(whole.bitsPerByte).toBeCloseTo(whole.loss / Math.LN2, 10);

    const g1 = await runCli(['generate', '--run', runA, '--prompt', 'The whale', '--max-tokens', '24', '--temperature', '0'], { cwd: dir });
    expect(g1.code, g1.stderr).toBe(0);
    expect(g1.stdout.startsWith('The whale')).toBe(true);
    expect(Buffer.byteLength(g1.stdout) - Buffer.byteLength('The whale\n')).toBeLessThanOrEqual(24);
    const g2 = await runCli(['generate', '--run', runA, '--prompt', 'The whale', '--max-tokens', '24', '--temperature', '0'], { cwd: dir });
    expect(g2.stdout).toBe(g1.stdout);
    const s1 = await runCli(['generate', '--run', runA, '--prompt', 'Call me', '--max-tokens', '24', '--seed', '7', '--top-k', '5'], { cwd: dir });
    const s2 = await runCli(['generate', '--run', runA, '--prompt', 'Call me', '--max-tokens', '24', '--seed', '7', '--top-k', '5'], { cwd: dir });
    expect(s1.code, s1.stderr).toBe(0);
    expect(s2.stdout).toBe(s1.stdout);
  });

  it('two runs of the same config give identical metrics', async () => {
    const runB = join(dir, 'b');
    const r = await runCli(['train', ...trainArgs(), '--out', runB], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(numbersOf(runB)).toEqual(numbersOf(runA));
  });

  it('a run killed with SIGKILL and resumed ends with the same validation loss', async () => {
    const runK = join(dir, 'k');
    const at = await killAfterCheckpoint(trainArgs(), runK, 20, { cwd: dir, timeoutMs: 60_000 });
    expect(at).toBeLessThan(STEPS);

    const r = await runCli(['train', '--resume', runK], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`resuming ${runK} at step ${at} of ${STEPS}`);
    const summaryK = readJson<Summary>(join(runK, 'summary.json'));
    expect(relErr(summaryK.val_loss as number, summaryA.val_loss as number)).toBeLessThan(1e-6);
    // the metrics read as if the run had never stopped
    expect(numbersOf(runK).map((x) => x.step)).toEqual(numbersOf(runA).map((x) => x.step));
    numbersOf(runK).forEach((x, i) => {
      const a = numbersOf(runA)[i]!;
      if (x.kind === 'health') {
        // the window open at the kill restarts at the checkpoint; later windows are the same
        if (x.since_step === a.since_step) expect(x).toEqual(a);
        else expect(x).toMatchObject({ since_step: at, step: a.step });
        return;
      }
      const key = x.kind === 'train' ? 'loss' : 'val_loss';
      expect(relErr(x[key] as number, a[key] as number), `${x.kind} step ${x.step}`).toBeLessThan(1e-6);
    });
    // TensorBoard: a second events file, and the redone steps dropped from the first
    expect(eventFiles(join(runK, 'tb'))).toHaveLength(2);
    expect(tbSeries(runK, 'train/loss').map(([step]) => step)).toEqual(metricSeries(runA, 'train', 'loss').map(([step]) => step));
    expect(tbSeries(runK, 'train/loss')).toEqual(metricSeries(runK, 'train', 'loss'));
    expect(tbSeries(runK, 'val/loss')).toEqual(metricSeries(runK, 'eval', 'val_loss'));
  });

  it('Ctrl-C (SIGINT) finishes the step, saves a checkpoint and exits 130; resuming finishes the run', async () => {
    const runI = join(dir, 'i');
    // Slowed steps: the tiny run (a few seconds) must outlast the second process's start below.
    const slow = { NODE_OPTIONS: `--import ${new URL('./slow-steps.test-preload.mjs', import.meta.url).href}` };
    const child = startCli(['train', ...trainArgs(), '--out', runI], { cwd: dir, env: slow });
    await waitFor(() => (checkpointStep(runI) ?? 0) >= 10, 'a checkpoint at step 10', 60_000);
    // meanwhile, a second process cannot train the same run
    const second = await runCli(['train', '--resume', runI], { cwd: dir });
    expect(second.code, second.stderr).toBe(2);
    expect(errorLines(second.stderr).at(-1)).toMatch(new RegExp(`^peer-train: ${runI} is being trained by process ${child.pid}; stop it first`));
    child.kill('SIGINT');
    const stopped = await child.result;
    expect(stopped.code, stopped.stderr).toBe(130);
    const at = checkpointStep(runI)!;
    expect(stopped.stderr).toContain(`stopped at step ${at} of ${STEPS}; checkpoint saved. Continue with: peer-train train --resume ${runI}`);
    expect(stopped.stderr).not.toMatch(/^\s+at /m);
    expect(at).toBeLessThan(STEPS);
    expect(existsSync(join(runI, 'train.lock'))).toBe(false);
    const r = await runCli(['train', '--resume', runI], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(relErr(readJson<Summary>(join(runI, 'summary.json')).val_loss as number, summaryA.val_loss as number)).toBeLessThan(1e-6);
  });

  it('refuses a corrupted checkpoint, a checkpoint of another config and an existing --out, changing nothing', async () => {
    const corrupt = join(dir, 'corrupt');
    cpSync(runA, corrupt, { recursive: true });
    const shard = join(corrupt, 'checkpoint', 'model-00001-of-00001.safetensors');
    const bytes = readFileSync(shard);
    bytes[bytes.length - 100]! ^= 0xff;
    writeFileSync(shard, bytes);
    for (const args of [['train', '--resume', corrupt], ['eval', '--run', corrupt]]) {
      const r = await runCli(args, { cwd: dir });
      expect(r.code, r.stderr).toBe(2);
      const lines = errorLines(r.stderr);
      expect(lines.at(-1)).toMatch(/^peer-train: cannot use the checkpoint: .*model-00001-of-00001\.safetensors: sha256 .* does not match the manifest's .* \(corrupt file\)$/);
    }
    expect(readFileSync(shard).equals(bytes)).toBe(true);

    const other = join(dir, 'other');
    cpSync(runA, other, { recursive: true });
    const record = readJson<{ config: { optim: { lr: number } } }>(join(other, 'config.json'));
    record.config.optim.lr = 0.01;
    writeFileSync(join(other, 'config.json'), JSON.stringify(record));
    const d = await runCli(['train', '--resume', other], { cwd: dir });
    expect(d.code, d.stderr).toBe(2);
    expect(errorLines(d.stderr).at(-1)).toBe(
      `peer-train: the checkpoint in ${join(other, 'checkpoint')} was written by a different config than this run's config.json; refusing to resume`,
    );

    const before = readFileSync(join(runA, 'metrics.jsonl'));
    const o = await runCli(['train', ...trainArgs(), '--out', runA], { cwd: dir });
    expect(o.code).toBe(2);
    expect(errorLines(o.stderr)).toEqual([`peer-train: --out ${runA} already holds a run; continue it with --resume ${runA} or choose another --out`]);
    expect(readFileSync(join(runA, 'metrics.jsonl')).equals(before)).toBe(true);
  });

  it('a non-finite loss stops the run with exit 1 and keeps the last good checkpoint', async () => {
    const runN = join(dir, 'nan');
    const r = await runCli(
      ['train', ...trainArgs(), '--out', runN, '--set', 'optim.lr=1e30', '--set', 'optim.minLr=0', '--set', 'optim.warmupSteps=0', '--set', 'train.checkpointEvery=1'],
      { cwd: dir },
    );
    expect(r.code, r.stderr).toBe(1);
    expect(errorLines(r.stderr).at(-1)).toMatch(
      new RegExp(`^peer-train: non-finite loss \\(NaN\\) at step 2: training stopped, nothing was updated; the last good checkpoint in ${join(runN, 'checkpoint')} is kept`),
    );
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(checkpointStep(runN)).toBe(1);
    expect(existsSync(join(runN, 'summary.json'))).toBe(false);
  });
});
