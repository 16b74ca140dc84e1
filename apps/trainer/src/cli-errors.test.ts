// Bad input through the built CLI: one line on stderr naming the problem, exit code 2, no stack
// trace (unless --verbose), nothing created or overwritten.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli, tempDir } from './cli-process.test-util.js';

let dir: string;
let cache: string;

beforeAll(() => {
  dir = tempDir();
  cache = join(dir, 'cache');
});

/** Runs `train` with the tiny preset into dir/<out> and a private cache. */
const train = (out: string, ...args: string[]) =>
  runCli(['train', '--preset', 'tiny', '--out', join(dir, out), '--set', `data.cacheDir=${cache}`, ...args], { cwd: dir });

function expectOneLineError(r: { code: number | null; stderr: string }, code: number, pattern: RegExp): void {
  const lines = errorLines(r.stderr);
  expect(r.code, r.stderr).toBe(code);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/^\s+at /m);
}

describe('peer-train bad input', () => {
  it('unknown command or flag: exit 2 with commander\'s message', async () => {
    const a = await runCli(['trian']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/unknown command 'trian'/);
    const b = await runCli(['train', '--stpes', '3']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/unknown option '--stpes'/);
    const c = await runCli(['train', '--steps', 'ten']);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/option '--steps <n>' argument 'ten' is invalid\. expected an integer >= 1, got 'ten'/);
    const d = await runCli(['train', '--ffw', 'mlp']);
    expect(d.code).toBe(2);
    expect(d.stderr).toMatch(/Allowed choices are dense, moe, moe-ec, pkm, peer/);
  });

  it('invalid config values and unknown keys name the key; nothing is created', async () => {
    expectOneLineError(await train('a', '--set', 'model.heads=3'), 2, /^peer-train: invalid config: model\.heads = 3: must divide dim \(32\)$/);
    expectOneLineError(await train('a', '--set', 'optim.lrr=1'), 2, /^peer-train: invalid config: unknown key 'optim\.lrr'$/);
    expectOneLineError(await train('a', '--set', 'optim.lr'), 2, /^peer-train: --set expects key\.path=value, got 'optim\.lr'$/);
    expectOneLineError(await train('a', '--preset', 'nope'), 2, /^peer-train: unknown preset 'nope': expected one of /);
    expectOneLineError(
      await train('a', '--set', 'model.ffw.options.numExperts=300'),
      2,
      /^peer-train: invalid config: model\.ffw\.options\.numExperts = 300: must be a perfect square .* \(peer layer\)$/,
    );
    expectOneLineError(
      await train('a', '--set', 'model.ffw.options.topK=40'),
      2,
      /^peer-train: invalid config: model\.ffw\.options\.topK = 40: must be at most sqrt\(numExperts\) = 16 \(peer layer\)$/,
    );
    expectOneLineError(await train('a', '--flops', '1000'), 2, /^peer-train: train\.flops = 1\.000e\+3 is less than one training step/);
    expect(existsSync(join(dir, 'a'))).toBe(false);
  });

  it('a missing or empty data path is named', async () => {
    expectOneLineError(await train('b', '--data', join(dir, 'no-such.txt')), 2, /^peer-train: data: .*no-such\.txt: corpus not found: .*neither a built-in corpus/);
    writeFileSync(join(dir, 'empty.txt'), '');
    expectOneLineError(await train('b', '--data', join(dir, 'empty.txt')), 2, /^peer-train: data: .*empty\.txt: empty corpus/);
    mkdirSync(join(dir, 'empty-folder'));
    expectOneLineError(await train('b', '--data', join(dir, 'empty-folder')), 2, /^peer-train: data: .*empty-folder: empty corpus/);
    expect(existsSync(join(dir, 'b'))).toBe(false);
  });

  it('a corrupt gzip shard, a missing Parquet column and a glob matching nothing: one line naming the file', async () => {
    const fixtures = join(import.meta.dirname, '..', '..', '..', 'packages', 'data', 'test-fixtures');
    expectOneLineError(
      await train('c', '--data', join(fixtures, 'corrupt.jsonl.gz')),
      2,
      /^peer-train: data: .*corrupt\.jsonl\.gz: corrupt gzip data in compressed bytes \d+-\d+ of \d+: /,
    );
    expectOneLineError(
      await train('c', '--data', join(fixtures, 'content.parquet')),
      2,
      /^peer-train: data: .*content\.parquet: no column "text" \(columns: "id", "content"\); choose the text column with textField \/ --text-field$/,
    );
    expectOneLineError(await train('c', '--data', join(fixtures, 'shards', '*.parquet')), 2, /^peer-train: data: .*no files match the pattern "\*\.parquet"/);
    expect(existsSync(join(dir, 'c'))).toBe(false);
  });

  it('--out pointing at a non-empty folder is refused', async () => {
    const out = join(dir, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    expectOneLineError(await train('occupied'), 2, /^peer-train: --out .*occupied is not empty; choose an empty or new folder$/);
    expect(readdirSync(out)).toEqual(['notes.txt']);
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
  });

  it('--resume refuses config flags, and folders that are not runs', async () => {
    expectOneLineError(
      await runCli(['train', '--resume', dir, '--preset', 'tiny', '--set', 'optim.lr=1']),
      2,
      /^peer-train: --resume continues a run with the config in its config\.json; drop --preset, --set$/,
    );
    expectOneLineError(await runCli(['train', '--resume', join(dir, 'nothing')]), 2, /^peer-train: --resume .*nothing: no such folder$/);
    expectOneLineError(await runCli(['train', '--resume', dir]), 2, /^peer-train: --resume .* is not a run folder \(no config\.json\)$/);
    expectOneLineError(await runCli(['eval', '--run', dir]), 2, /^peer-train: --run .* is not a run folder \(no config\.json\)$/);
  });

  it('--backend webgpu without a usable GPU adapter: one line, exit 2, nothing created', async () => {
    // no Vulkan driver: an ICD manifest that does not exist (Dawn may print its own warning first)
    const noGpu = { VK_ICD_FILENAMES: join(dir, 'no-such-icd.json'), VK_DRIVER_FILES: '', PEER_WEBGPU_ALLOW_FALLBACK: '' };
    const r = await runCli(['train', '--preset', 'tiny', '--out', join(dir, 'gpu'), '--set', `data.cacheDir=${cache}`, '--backend', 'webgpu'], { cwd: dir, env: noGpu });
    expect(r.code, r.stderr).toBe(2);
    const ours = errorLines(r.stderr).filter((l) => l.startsWith('peer-train:'));
    expect(ours, r.stderr).toHaveLength(1);
    expect(ours[0]).toMatch(/^peer-train: backend 'webgpu' is not available: webgpu: /);
    expect(existsSync(join(dir, 'gpu'))).toBe(false);
    const d = await runCli(['doctor', '--backend', 'webgpu'], { cwd: dir, env: noGpu });
    expect(d.code, d.stderr).toBe(2);
    expect(errorLines(d.stderr).filter((l) => l.startsWith('peer-train:'))[0]).toMatch(/^peer-train: backend 'webgpu' is not available/);
  });

  it('prints the stack trace only with --verbose', async () => {
    const r = await train('c', '--set', 'model.heads=3', '--verbose');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/UsageError: invalid config: model\.heads = 3/);
    expect(r.stderr).toMatch(/^\s+at /m);
  });
});
