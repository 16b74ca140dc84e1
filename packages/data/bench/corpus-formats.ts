// What reading a corpus gzip-compressed costs: the State of the Union corpus (10.8 MB) written as
// JSONL, the same file compressed by the gzip tool (level 6), and the cold cache build of all splits
// (read, split, tokenize, write) from each, alternating, medians. Also the read alone (documents
// only). Run: `pnpm --filter @peer/data bench:formats` (BENCH_REPEATS, default 5).
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCorpus, prepareTokens, type TokenizerName } from '../src/index.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const MB = 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

interface Timing {
  wall: number;
  cpu: number;
}

async function once(fn: () => Promise<unknown>): Promise<Timing> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 };
}

/** Runs each of `fns` REPEATS times, interleaved (a, b, a, b, ...) so that load changes hit both alike. */
async function alternate(fns: (() => Promise<unknown>)[]): Promise<Timing[]> {
  for (const fn of fns) await fn(); // warm-up
  const runs: Timing[][] = fns.map(() => []);
  for (let r = 0; r < REPEATS; r++) for (let i = 0; i < fns.length; i++) runs[i]!.push(await once(fns[i]!));
  return runs.map((ts) => ({ wall: median(ts.map((t) => t.wall)), cpu: median(ts.map((t) => t.cpu)) }));
}

const dir = await mkdtemp(join(tmpdir(), 'peer-bench-formats-'));
try {
  const lines: string[] = [];
  for await (const doc of await loadCorpus('sotu')) lines.push(JSON.stringify({ id: doc.id, text: doc.text }));
  const jsonl = join(dir, 'sotu.jsonl');
  await writeFile(jsonl, lines.join('\n') + '\n');
  execFileSync('gzip', ['-6', '-n', '-k', jsonl]);
  const gz = `${jsonl}.gz`;
  const [plainBytes, gzBytes] = [(await stat(jsonl)).size, (await stat(gz)).size];
  console.log(
    `sotu.jsonl ${(plainBytes / MB).toFixed(2)} MB, sotu.jsonl.gz ${(gzBytes / MB).toFixed(2)} MB; node ${process.version}; ` +
      `median of ${REPEATS}, alternating; load average ${loadavg()[0]!.toFixed(1)}`,
  );
  console.log('\nms by wall time (by CPU time)\n');
  console.log('| work | .jsonl | .jsonl.gz | extra for gzip |');
  console.log('|---|---:|---:|---:|');
  const row = (what: string, [a, b]: Timing[]): void =>
    console.log(
      `| ${what} | ${a!.wall.toFixed(0)} (${a!.cpu.toFixed(0)}) | ${b!.wall.toFixed(0)} (${b!.cpu.toFixed(0)}) | ` +
        `${(b!.wall - a!.wall).toFixed(0)} (${(b!.cpu - a!.cpu).toFixed(0)}) |`,
    );
  const read = (path: string) => async () => {
    let n = 0;
    for await (const doc of await loadCorpus(path)) n += doc.text.length;
    return n;
  };
  row('read the documents', await alternate([read(jsonl), read(gz)]));
  for (const tokenizer of ['byte', 'gpt2'] as TokenizerName[]) {
    const build = (path: string) => async () => {
      const cacheDir = await mkdtemp(join(dir, 'cache-'));
      const file = await prepareTokens({ corpus: path, tokenizer, split: 'train', cacheDir, inMemory: false });
      file.close();
      await rm(cacheDir, { recursive: true, force: true });
    };
    row(`cold cache build, ${tokenizer}`, await alternate([build(jsonl), build(gz)]));
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
