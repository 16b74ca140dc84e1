// Sweeps on a queue end to end, through the built CLI and a real redis-server: connection errors
// (one line, password masked, exit 2); a 4-run sweep on 2 workers, one SIGKILLed after its first
// checkpoint and a third started, ends with every val_loss equal to the local sweep's, the killed
// run continued from its checkpoint, and one job per run (rerunning the command adds none).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorLines, runCli, startCli, tempDir } from '../cli-process.test-util.js';
import { QUEUE_NAME } from './jobs.js';
import { freePort, redisServerAvailable, startRedisServer, type RedisServer } from './redis-server.test-util.js';

const available = redisServerAvailable();
const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

function readCsv(path: string): Record<string, string>[] {
  const [header, ...lines] = readFileSync(path, 'utf8').trimEnd().split('\n');
  const cols = header!.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i]!, v])));
}

async function until(what: string, check: () => boolean, ms = 90_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!available)('sweeps on a queue (redis-server)', () => {
  let redis: RedisServer;
  let secured: RedisServer;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('peer-queue-');
    redis = await startRedisServer();
    secured = await startRedisServer({ password: 'hunter2' });
  });
  afterAll(async () => {
    await redis?.stop();
    await secured?.stop();
  });

  it('Redis down, a wrong password or none: one line naming the URL (password masked), exit 2', async () => {
    const down = await freePort();
    const cases: [string[], RegExp][] = [
      [['worker', '--queue', `redis://:hunter2@127.0.0.1:${down}`], new RegExp(`^peer-train: cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${down}: connection refused`)],
      [['worker', '--queue', `redis://:wrong@127.0.0.1:${secured.port}`], new RegExp(`^peer-train: Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${secured.port} refused the user name or password`)],
      [['sweep', '--queue', `redis://127.0.0.1:${secured.port}`, '--status'], /requires a password/],
      [['sweep', '--queue', `http://127.0.0.1:${secured.port}`, '--status'], /unsupported scheme 'http'/],
    ];
    for (const [args, pattern] of cases) {
      const r = await runCli(args, { cwd: dir });
      const lines = errorLines(r.stderr);
      expect(r.code, r.stderr).toBe(2);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(pattern);
      expect(r.stderr).not.toContain('hunter2');
      expect(r.stderr).not.toContain('wrong');
    }
    const ok = await runCli(['sweep', '--queue', secured.url, '--status'], { cwd: dir });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe(`no sweeps on the queue at redis://:***@127.0.0.1:${secured.port}\n`);
  }, 60_000);

  it('4 runs, 2 workers, one SIGKILLed after its first checkpoint, a third started: the local sweep\'s numbers', async () => {
    const cache = join(dir, 'cache');
    const config = join(dir, 'e2e.json');
    writeFileSync(
      config,
      JSON.stringify({
        description: 'queue e2e',
        sweep: {
          base: { extends: 'tiny', data: { corpus: 'moby-dick', cacheDir: cache }, train: { evalEvery: 0, finalEvalBatches: 2, checkpointEvery: 4, logEvery: 2 } },
          budgets: [4e8],
          methods: { dense: {}, peer: {} },
          sizes: [{ name: 'xs', config: { model: { dim: 16, heads: 2 } } }, { name: 's' }],
        },
      }),
    );
    const local = join(dir, 'local');
    const ref = await runCli(['sweep', '--config', config, '--out', local, '--jobs', '2'], { cwd: dir });
    expect(ref.code, ref.stderr).toBe(0);

    const shared = join(dir, 'shared');
    const out = join(shared, 'sweep-e2e');
    const sweep = startCli(['sweep', '--config', config, '--out', out, '--queue', redis.url], { cwd: dir });
    const worker = () => startCli(['worker', '--queue', redis.url, '--runs-dir', shared, '--stall-seconds', '3'], { cwd: dir });
    const w1 = worker();
    const w2 = worker();
    let w1err = '';
    let w2err = '';
    w1.stderr!.on('data', (d: Buffer) => (w1err += d.toString()));
    w2.stderr!.on('data', (d: Buffer) => (w2err += d.toString()));
    // the first run with a checkpoint, and the worker training it
    let victim: { id: string; worker: typeof w1 } | undefined;
    await until('a first checkpoint', () => {
      for (const [w, text] of [[w1, w1err], [w2, w2err]] as const) {
        for (const m of text.matchAll(/start (\S+) \(/g)) {
          if (existsSync(join(out, 'runs', m[1]!, 'checkpoint', 'manifest.json'))) victim = { id: m[1]!, worker: w };
        }
      }
      return victim !== undefined;
    });
    const { id } = victim!;
    victim!.worker.kill('SIGKILL');
    const manifest = JSON.parse(readFileSync(join(out, 'runs', id, 'checkpoint', 'manifest.json'), 'utf8')) as { metadata: Record<string, string> };
    const firstCheckpoint = (JSON.parse(manifest.metadata['peer-trainer']!) as { step: number }).step;
    const before = readFileSync(join(out, 'runs', id, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= firstCheckpoint);
    expect(firstCheckpoint).toBeGreaterThan(0);
    const w3 = worker();

    const done = await sweep.result;
    expect(done.code, done.stderr).toBe(0);
    // the killed run went on from its checkpoint: its log says so, the metrics written before the kill are kept as they were
    const resumed = new RegExp(`done {2}${id} on \\S+: val_loss [\\d.]+ \\(.*1 lost worker.*resumed from step (\\d+)\\)`).exec(done.stderr);
    expect(resumed, done.stderr).not.toBeNull();
    expect(Number(resumed![1])).toBeGreaterThanOrEqual(firstCheckpoint);
    expect(readFileSync(join(out, 'logs', `${id}.log`), 'utf8')).toMatch(/resuming .* at step [1-9]\d* of/);
    const after = readFileSync(join(out, 'runs', id, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= firstCheckpoint);
    expect(after).toEqual(before);
    expect(existsSync(join(out, 'runs', id, 'train.lock'))).toBe(false);

    // every number of the local sweep (timings aside), and the same table
    const rows = readCsv(join(out, 'summary.csv'));
    const refRows = readCsv(join(local, 'summary.csv'));
    expect(rows).toHaveLength(4);
    rows.forEach((row, i) => {
      const r = refRows[i]!;
      expect(row.status).toBe('done');
      for (const key of ['budget', 'method', 'size', 'params_total', 'params_active', 'flops_per_token', 'steps', 'tokens', 'run']) expect(row[key], key).toBe(r[key]);
      for (const key of ['val_loss', 'val_ppl', 'val_bpb']) expect(relErr(Number(row[key]), Number(r[key])), `${row.run} ${key}`).toBeLessThan(1e-6);
    });
    expect(readFileSync(join(out, 'summary.md'), 'utf8')).toBe(readFileSync(join(local, 'summary.md'), 'utf8'));
    for (const f of ['isoflop.svg', 'isoflop.png', 'report.html']) expect(existsSync(join(out, f)), f).toBe(true);

    // one job per run; the same command again queues nothing and trains nothing
    const again = await runCli(['sweep', '--config', config, '--out', out, '--queue', redis.url], { cwd: dir });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr.match(/^skip {2}/gm)).toHaveLength(4);
    const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      const counts = await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed');
      expect(counts).toMatchObject({ completed: 4, failed: 0, waiting: 0, active: 0, delayed: 0 });
    } finally {
      await queue.close();
    }
    const status = await runCli(['sweep', '--queue', redis.url, '--status', '--out', out], { cwd: dir });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/4 runs: 4 done/);

    for (const w of [w1, w2, w3].filter((w) => w !== victim!.worker)) w.kill('SIGTERM');
    for (const w of [w1, w2, w3].filter((w) => w !== victim!.worker)) expect((await w.result).code).toBe(130);
  }, 240_000);
  it('a run that fails three times is reported failed with its log; the sweep writes the table and exits 1', async () => {
    const config = join(dir, 'failing.json');
    writeFileSync(
      config,
      JSON.stringify({
        description: 'a corpus the workers lack',
        sweep: { base: { extends: 'tiny', data: { corpus: join(dir, 'no-such-corpus.txt') } }, budgets: [4e8], methods: { dense: {} }, sizes: [{ name: 'xs', config: { model: { dim: 16, heads: 2 } } }] },
      }),
    );
    const out = join(dir, 'sweep-failing');
    const w = startCli(['worker', '--queue', redis.url, '--runs-dir', join(dir, 'elsewhere'), '--stall-seconds', '3'], { cwd: dir });
    try {
      const r = await runCli(['sweep', '--config', config, '--out', out, '--queue', redis.url], { cwd: dir });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/FAIL {2}4e8-dense-xs after 3 tries: .*no-such-corpus/);
      expect(r.stderr).toMatch(/1 of 1 sweep runs failed \(4e8-dense-xs\)/);
      expect(readCsv(join(out, 'summary.csv'))[0]!.status).toBe('failed');
      // the workers' folders are elsewhere: the failed try's log is kept in the sweep folder
      expect(readFileSync(join(out, 'logs', '4e8-dense-xs.log'), 'utf8')).toMatch(/no-such-corpus/);
    } finally {
      w.kill('SIGTERM');
      await w.result;
    }
  }, 120_000);
});
