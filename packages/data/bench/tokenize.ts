// Tokenization throughput on the State of the Union corpus (10.8 MB of UTF-8 text), and the cost of
// the cache build, a cache hit and batching. Run: `pnpm bench` (after `pnpm build` is not needed:
// this runs the sources through tsx). Prints medians.
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Batcher, createTokenizer, loadCorpus, prepareTokens, type TokenizerName } from '../src/index.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const MB = 1e6;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

// Wall time and this process's CPU time (user + system), medians: on a shared, loaded machine the
// CPU time is the better estimate of what the code costs on an idle one.
interface Timing {
  wall: number;
  cpu: number;
}

async function time(fn: () => unknown | Promise<unknown>, repeats = REPEATS): Promise<Timing> {
  await fn(); // warm-up (JIT, merge caches, lazy tables)
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

const rate = (megabytes: number, t: Timing): string =>
  `${(megabytes / (t.wall / 1000)).toFixed(1)} (${(megabytes / (t.cpu / 1000)).toFixed(1)})`;

const corpus = await loadCorpus('sotu');
const texts: string[] = [];
for await (const doc of corpus) texts.push(doc.text);
const bytes = corpus.byteSize;
console.log(
  `corpus sotu: ${texts.length} documents, ${(bytes / MB).toFixed(2)} MB UTF-8; node ${process.version}; median of ${REPEATS}; ` +
    `load average ${loadavg()[0]!.toFixed(1)}`,
);

const names: TokenizerName[] = ['byte', 'gpt2', 'cl100k'];
console.log('\nMB/s by wall time (by CPU time)');
console.log('\n| tokenizer | encode MB/s | decode MB/s | tokens | bytes/token |');
console.log('|---|---:|---:|---:|---:|');
for (const name of names) {
  const tok = createTokenizer(name);
  let tokens = 0;
  const encode = await time(() => {
    tokens = 0;
    for (const t of texts) tokens += tok.encode(t).length;
  });
  const encoded = texts.map((t) => tok.encode(t));
  const decode = await time(() => {
    for (const ids of encoded) tok.decode(ids);
  });
  console.log(`| ${name} | ${rate(bytes / MB, encode)} | ${rate(bytes / MB, decode)} | ${tokens} | ${(bytes / tokens).toFixed(2)} |`);
}

console.log('\n| tokenizer | cold cache build (all splits) | cache hit (checksum + load of train) |');
console.log('|---|---:|---:|');
for (const name of ['byte', 'gpt2'] as const) {
  const dirs: string[] = [];
  const fresh = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'peer-data-bench-'));
    dirs.push(d);
    return d;
  };
  const build = await time(async () => prepareTokens({ corpus, tokenizer: name, split: 'train', cacheDir: await fresh() }), 3);
  const warmDir = await fresh();
  await prepareTokens({ corpus, tokenizer: name, split: 'train', cacheDir: warmDir });
  const hit = await time(() => prepareTokens({ corpus, tokenizer: name, split: 'train', cacheDir: warmDir }));
  console.log(
    `| ${name} | ${build.wall.toFixed(0)} ms (${build.cpu.toFixed(0)} ms CPU): ${rate(bytes / MB, build)} MB/s | ${hit.wall.toFixed(0)} ms (${hit.cpu.toFixed(0)} ms CPU) |`,
  );
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}

const cacheDir = await mkdtemp(join(tmpdir(), 'peer-data-bench-'));
const train = await prepareTokens({ corpus, tokenizer: 'gpt2', split: 'train', cacheDir });
console.log('\n| batcher (gpt2 sotu train) | batches/s | tokens/s |');
console.log('|---|---:|---:|');
for (const [B, T] of [
  [32, 256],
  [8, 1024],
] as const) {
  const batcher = new Batcher(train, { batchSize: B, seqLen: T, seed: 0 });
  const n = 4000;
  const t = await time(() => {
    for (let i = 0; i < n; i++) batcher.next();
  });
  console.log(`| B=${B}, seqLen=${T} | ${rate(n, t).replace(/\.\d/g, '')} | ${rate((n * B * T) / 1e6, t)} M |`);
}
await rm(cacheDir, { recursive: true, force: true });
