// peer-train bench: the speed benchmarks.
//   bench layer  one feed-forward layer's full training step (forward, backward, dense Adam, sparse
//                table update), timed by the layer packages' own harnesses: @peer/layer's
//                benchLayerStep (PEER) and @peer/baselines' benchBaselineLayer (dense, moe, moe-ec, pkm).
//   bench train  end-to-end training of the dense and PEER presets: tokens/s, MFU, and the PEER/dense
//                tokens/s ratio (target >= 0.8), each preset in its own `peer-train train` process.
//   bench all    both, each measurement in its own process (peak RSS is per process).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchBaselineLayer, type BaselineKind } from '@peer/baselines';
import { ConfigError } from '@peer/feed-forward';
import { benchLayerStep, parseLayerOverrides, peerActiveParams, peerFlops, peerParams, resolvePeerConfig, type PeerLayerConfig } from '@peer/layer';
import { parseSetArg } from '../config/overrides.js';
import { UsageError } from '../errors.js';
import { readJsonFile, type MetricsRecord } from '../run/run-folder.js';
import { startEngine } from '../run/start-engine.js';
import type { RunSummary } from '../run/summary.js';
import { defaultCli } from '../sweep/run-sweep.js';
import { machineCores } from '../run/engine-threads.js';
import { measurePytorchDense, type PytorchDense } from './pytorch-bench.js';

/** The layers `bench layer` times, named as in the model config (`ffw.kind`). */
export const BENCH_LAYERS = ['peer', 'dense', 'moe', 'moe-ec', 'pkm'] as const;
export type BenchLayerKind = (typeof BENCH_LAYERS)[number];

/** Old `--layer` spellings, still accepted with a warning on stderr: `ffw` was the dense FFW's name here only. */
const DEPRECATED_BENCH_LAYERS: Record<string, BenchLayerKind> = { ffw: 'dense' };


export interface BenchLayerOptions {
  layer: string;
  experts?: number;
  dim?: number;
  heads?: number;
  topk?: number;
  dimKey?: number;
  tokens?: number;
  steps?: number;
  warmup?: number;
  /** Layer config fields, `key=value`. */
  set?: string[];
  backend?: string;
  /** Threads of the wasm engine (default every core). */
  threads?: number;
  json?: boolean;
}

/** The JSON of `bench layer`: at least these fields, plus what the layer's harness reports. */
export interface BenchLayerFields {
  /** Median process CPU time per step: closer to the uncontended step time on a busy machine. */
  cpu_ms_per_step_median: number;
  backend: string;
  dim: number;
  tokens: number;
  steps: number;
  ms_per_step_median: number;
  tokens_per_second: number;
  peak_rss_bytes: number;
  flops_per_token: number;
  active_params_per_token: number;
  total_params: number;
  config: Record<string, unknown>;
}

export type BenchLayerResult = BenchLayerFields & { layer: BenchLayerKind; [key: string]: unknown };

/** Which flags each layer takes, and the config field each sets. */
const FLAG_FIELDS: Record<BenchLayerKind, Partial<Record<'experts' | 'heads' | 'topk' | 'dimKey', string>>> = {
  peer: { experts: 'numExperts', heads: 'heads', topk: 'topK', dimKey: 'dimKey' },
  dense: {},
  moe: { experts: 'experts', topk: 'topK' },
  'moe-ec': { experts: 'experts' },
  pkm: { experts: 'memories', heads: 'heads', topk: 'topK', dimKey: 'dimKey' },
};
const FLAG_NAMES = { experts: '--experts', heads: '--heads', topk: '--topk', dimKey: '--dim-key' } as const;

/** Starts the engine (wasm with `threads` threads, default every core); returns its name. */
export async function startBackend(requested: string | undefined, threads: number = machineCores()): Promise<string> {
  return (await startEngine(requested, threads)).backend;
}

/** A layer's config error (every package's config error is a `ConfigError`) as a usage error. */
function asConfigUsageError(err: unknown, layer: string): unknown {
  if (err instanceof ConfigError) return new UsageError(`bench layer --layer ${layer}: ${err.message}`);
  return err;
}

/** The layer's config fields from the flags (only those given) and `--set`. */
export function benchLayerConfig(options: BenchLayerOptions): { kind: BenchLayerKind; fields: Record<string, unknown> } {
  const renamed = DEPRECATED_BENCH_LAYERS[options.layer];
  if (renamed) process.stderr.write(`peer-train: bench layer: --layer ${options.layer} is deprecated, use --layer ${renamed}\n`);
  const kind = (renamed ?? options.layer) as BenchLayerKind;
  if (!BENCH_LAYERS.includes(kind)) throw new UsageError(`bench layer: unknown --layer '${options.layer}': expected one of ${BENCH_LAYERS.join(', ')}`);
  const fields: Record<string, unknown> = {};
  for (const flag of ['experts', 'heads', 'topk', 'dimKey'] as const) {
    const value = options[flag];
    if (value === undefined) continue;
    const field = FLAG_FIELDS[kind][flag];
    if (!field) {
      const takes = Object.keys(FLAG_FIELDS[kind]).map((f) => FLAG_NAMES[f as keyof typeof FLAG_NAMES]);
      throw new UsageError(
        `bench layer: ${FLAG_NAMES[flag]} does not apply to --layer ${kind} (it takes ${takes.length ? takes.join(', ') : 'none of --experts, --heads, --topk, --dim-key'}; other fields with --set key=value)`,
      );
    }
    fields[field] = value;
  }
  const sets = options.set ?? [];
  if (kind === 'peer') {
    try {
      const { overrides, training } = parseLayerOverrides(sets);
      if (training !== undefined) throw new UsageError('bench layer: --set training=... does not apply (a training step is what is timed)');
      Object.assign(fields, overrides);
    } catch (err) {
      throw asConfigUsageError(err, kind);
    }
  } else {
    for (const s of sets) {
      const { path, value } = parseSetArg(s);
      if (path.length !== 1) throw new UsageError(`bench layer --set ${s}: expected a top-level field of the ${kind} layer config`);
      fields[path[0]!] = value;
    }
  }
  return { kind, fields };
}

/** Runs `bench layer` and returns its JSON object (printing it, or a short summary). */
export async function benchLayerCommand(options: BenchLayerOptions, print: (text: string) => void = (t) => process.stdout.write(t)): Promise<BenchLayerResult> {
  const { kind, fields } = benchLayerConfig(options);
  const dim = options.dim ?? 256;
  const timing = { tokens: options.tokens ?? 512, steps: options.steps ?? 5, warmup: options.warmup ?? 1 };
  await startBackend(options.backend, options.threads);
  let result: BenchLayerResult;
  if (kind === 'peer') {
    const config: PeerLayerConfig = { ...(fields as Partial<PeerLayerConfig>), dim };
    let resolved;
    try {
      resolved = resolvePeerConfig(config);
    } catch (err) {
      throw asConfigUsageError(err, kind);
    }
    const r = await benchLayerStep({ layer: config, ...timing });
    result = {
      ...r,
      layer: 'peer',
      flops_per_token: peerFlops(resolved).total,
      active_params_per_token: peerActiveParams(resolved),
      total_params: peerParams(resolved).total,
      config: { ...resolved },
    };
  } else {
    let r;
    try {
      r = await benchBaselineLayer({ layer: kind as BaselineKind, dim, overrides: fields, ...timing });
    } catch (err) {
      throw asConfigUsageError(err, kind);
    }
    result = { ...r, layer: kind };
  }
  if (options.json) print(`${JSON.stringify(result)}\n`);
  else {
    print(
      `${kind}: ${result.ms_per_step_median} ms/step (median of ${result.steps}; CPU ${result.cpu_ms_per_step_median} ms), ` +
        `${Math.round(result.tokens_per_second).toLocaleString('en-US')} tokens/s, ` +
        `${(result.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB peak RSS, ${result.flops_per_token.toLocaleString('en-US')} FLOPs/token, backend ${result.backend}\n`,
    );
  }
  return result;
}

// ---- bench train ----

export interface BenchTrainOptions {
  /** Presets to train (default dense, peer). */
  presets?: string[];
  steps?: number;
  backend?: string;
  /** Threads of the wasm engine in each training (default every core). */
  threads?: number;
  /**
   * Thread counts to compare (e.g. [1, 2]): each preset is trained at each count, the counts
   * alternating over `rounds`, and medians are reported. Overrides `threads`.
   */
  compareThreads?: number[];
  /** Rounds of the comparison (default 1; use an odd number for medians). */
  rounds?: number;
  /** Measure PyTorch on the dense model at 1 and 2 threads when python3 with torch is present (default true). */
  pytorch?: boolean;
  json?: boolean;
  cli?: string;
  log?: (line: string) => void;
}

export interface PresetThroughput {
  preset: string;
  ffw: string;
  steps: number;
  /** Threads of the wasm engine the preset trained with. */
  threads: number;
  /** Median tokens/s over the logged windows after the first (the first holds kernel warm-up); over rounds, the median of those. */
  tokens_per_second: number;
  ms_per_step: number;
  /** Median model FLOPs utilization over the same windows (null when unmeasured). */
  mfu: number | null;
  params_total: number;
  params_active_per_token: number;
  flops_per_token: number;
  backend: string;
  /** Each round's tokens/s (one entry without a comparison). */
  rounds_tokens_per_second: number[];
}

export interface BenchTrainResult {
  benchmark: 'train';
  backend: string;
  /** The thread count of `presets` (the largest one compared). */
  threads: number;
  presets: Record<string, PresetThroughput>;
  /** With compareThreads: the presets at each thread count. */
  by_threads?: Record<string, Record<string, PresetThroughput>>;
  /** With compareThreads: tokens/s at the most threads over tokens/s at the fewest, per preset. */
  thread_speedup?: Record<string, number>;
  /** PEER preset tokens/s over dense preset tokens/s (target >= 0.8). */
  peer_dense_tokens_per_second_ratio: number | null;
  /** PyTorch on the dense model, measured in this run: tokens/s by thread count and the best; null when not measured. */
  pytorch_dense: { torch: string; tokens_per_second_by_threads: Record<string, number>; best_tokens_per_second: number; best_threads: number } | null;
  /** Why there is no PyTorch ratio (absent when there is one). */
  pytorch_note?: string;
  /** Dense preset tokens/s over PyTorch's best of 1 and 2 threads on the same model (null: see pytorch_note). */
  dense_vs_pytorch: number | null;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs the CLI with `args`; resolves with its exit code and output. */
export function runChild(cli: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

const lastLine = (text: string) => text.split('\n').filter((l) => l.trim()).at(-1) ?? '';

const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** One training of `preset` in its own process, read back from its run folder. */
async function trainOnce(cli: string, tmp: string, preset: string, steps: number, threads: number, backend: string | undefined): Promise<PresetThroughput> {
  const dir = join(tmp, `${preset}-${threads}t-${Date.now()}`);
  const args = ['train', '--preset', preset, '--steps', String(steps), '--out', dir, '--threads', String(threads)];
  for (const s of ['train.evalEvery=0', 'train.finalEvalBatches=1', 'train.logEvery=5', 'train.checkpointEvery=0']) args.push('--set', s);
  if (backend) args.push('--backend', backend);
  const r = await runChild(cli, args);
  if (r.code !== 0) throw new UsageError(`bench train: training preset ${preset} failed (exit ${r.code}): ${lastLine(r.stderr)}`, r.code === 2 ? 2 : 1);
  const summary = readJsonFile<RunSummary>(join(dir, 'summary.json'), 'run summary');
  const windows = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as MetricsRecord)
    .filter((m) => m.kind === 'train')
    .slice(1);
  const tps = median(windows.map((w) => Number(w.tokens_per_s)));
  const mfus = windows.map((w) => w.mfu).filter((m): m is number => typeof m === 'number');
  const record = readJsonFile<{ derived: { tokensPerStep: number } }>(join(dir, 'config.json'), 'run config');
  rmSync(dir, { recursive: true, force: true });
  return {
    preset,
    ffw: summary.ffw,
    steps,
    threads,
    tokens_per_second: round1(tps),
    ms_per_step: round1((record.derived.tokensPerStep * 1000) / tps),
    mfu: mfus.length ? round3(median(mfus)) : null,
    params_total: summary.params_total,
    params_active_per_token: summary.params_active_per_token,
    flops_per_token: summary.flops_per_token,
    backend: summary.backend,
    rounds_tokens_per_second: [round1(tps)],
  };
}

/** The medians of one preset's rounds at one thread count. */
function medianOfRounds(runs: PresetThroughput[]): PresetThroughput {
  const first = runs[0]!;
  const tps = median(runs.map((r) => r.tokens_per_second));
  const mfus = runs.map((r) => r.mfu).filter((m): m is number => m !== null);
  return {
    ...first,
    tokens_per_second: round1(tps),
    ms_per_step: round1(median(runs.map((r) => r.ms_per_step))),
    mfu: mfus.length ? round3(median(mfus)) : null,
    rounds_tokens_per_second: runs.map((r) => r.tokens_per_second),
  };
}

export async function benchTrainCommand(options: BenchTrainOptions, print: (text: string) => void = (t) => process.stdout.write(t)): Promise<BenchTrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const presets = options.presets ?? ['dense', 'peer'];
  const steps = options.steps ?? 30;
  if (!Number.isInteger(steps) || steps < 10) throw new UsageError(`bench train: --steps must be an integer >= 10 (the first 5 are warm-up), got ${steps}`);
  const counts = options.compareThreads ?? [options.threads ?? machineCores()];
  if (counts.length === 0 || counts.some((t) => !Number.isInteger(t) || t < 1)) {
    throw new UsageError(`bench train: --compare-threads must list whole numbers >= 1, got ${counts.join(',')}`);
  }
  const rounds = options.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`bench train: --rounds must be an integer >= 1, got ${rounds}`);
  const cli = options.cli ?? defaultCli();
  const tmp = mkdtempSync(join(tmpdir(), 'peer-bench-train-'));
  const samples = new Map<string, PresetThroughput[]>();
  let pytorch: PytorchDense | undefined;
  try {
    for (let r = 0; r < rounds; r++) {
      // Alternate the order of the thread counts between rounds, so that drifting machine load
      // favours none of them.
      const order = r % 2 === 0 ? counts : [...counts].reverse();
      for (const threads of order) {
        for (const preset of presets) {
          log(`bench train: ${preset}, ${steps} steps, ${threads} thread${threads === 1 ? '' : 's'}${rounds > 1 ? `, round ${r + 1}/${rounds}` : ''}`);
          const key = `${threads}\u0000${preset}`;
          samples.set(key, [...(samples.get(key) ?? []), await trainOnce(cli, tmp, preset, steps, threads, options.backend)]);
        }
      }
    }
    if (options.pytorch !== false && presets.includes('dense')) {
      log('bench train: PyTorch on the dense model, 1 and 2 threads');
      pytorch = await measurePytorchDense([1, 2], steps);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const byThreads: Record<string, Record<string, PresetThroughput>> = {};
  for (const threads of counts) {
    byThreads[String(threads)] = Object.fromEntries(presets.map((p) => [p, medianOfRounds(samples.get(`${threads}\u0000${p}`)!)]));
  }
  const mainThreads = Math.max(...counts);
  const out = byThreads[String(mainThreads)]!;
  const dense = Object.values(out).find((p) => p.ffw === 'dense');
  const peer = Object.values(out).find((p) => p.ffw === 'peer');
  const result: BenchTrainResult = {
    benchmark: 'train',
    backend: Object.values(out)[0]?.backend ?? 'unknown',
    threads: mainThreads,
    presets: out,
    peer_dense_tokens_per_second_ratio: dense && peer ? round3(peer.tokens_per_second / dense.tokens_per_second) : null,
    pytorch_dense: null,
    dense_vs_pytorch: null,
  };
  if (counts.length > 1) {
    const fewest = byThreads[String(Math.min(...counts))]!;
    result.by_threads = byThreads;
    result.thread_speedup = Object.fromEntries(presets.map((p) => [p, round3(out[p]!.tokens_per_second / fewest[p]!.tokens_per_second)]));
  }
  if (pytorch?.available) {
    result.pytorch_dense = {
      torch: pytorch.version,
      tokens_per_second_by_threads: Object.fromEntries(Object.entries(pytorch.tokensPerSecondByThreads).map(([k, v]) => [k, round1(v)])),
      best_tokens_per_second: round1(pytorch.best),
      best_threads: pytorch.bestThreads,
    };
    if (dense) result.dense_vs_pytorch = round3(dense.tokens_per_second / pytorch.best);
  } else {
    result.pytorch_note = pytorch
      ? `no ratio, because ${pytorch.reason}`
      : options.pytorch === false
        ? 'no ratio, because the PyTorch measurement was turned off (--no-pytorch)'
        : 'no ratio, because the dense preset was not benchmarked';
  }
  if (options.json) print(`${JSON.stringify(result)}\n`);
  else print(`${formatTrainBench(result)}\n`);
  return result;
}

export function formatTrainBench(r: BenchTrainResult): string {
  const row = (p: PresetThroughput) =>
    `${p.preset.padEnd(8)} ${p.ffw.padEnd(6)} ${String(p.threads).padStart(2)} thr ${Math.round(p.tokens_per_second).toLocaleString('en-US').padStart(7)} tokens/s  ` +
    `${p.ms_per_step.toFixed(0).padStart(6)} ms/step  MFU ${p.mfu === null ? 'n/a' : `${(100 * p.mfu).toFixed(1)}%`}` +
    (p.rounds_tokens_per_second.length > 1 ? `  (median of ${p.rounds_tokens_per_second.length} rounds)` : '');
  const lines = r.by_threads ? Object.values(r.by_threads).flatMap((presets) => Object.values(presets).map(row)) : Object.values(r.presets).map(row);
  if (r.thread_speedup) {
    for (const [preset, x] of Object.entries(r.thread_speedup)) lines.push(`${preset}: ${x.toFixed(3)}x the tokens/s of the fewest threads`);
  }
  if (r.peer_dense_tokens_per_second_ratio !== null) lines.push(`PEER / dense tokens/s: ${r.peer_dense_tokens_per_second_ratio.toFixed(3)} (target >= 0.8)`);
  if (r.pytorch_dense && r.dense_vs_pytorch !== null) {
    const by = Object.entries(r.pytorch_dense.tokens_per_second_by_threads)
      .map(([t, v]) => `${Math.round(v).toLocaleString('en-US')} at ${t}`)
      .join(', ');
    lines.push(`dense / PyTorch ${r.pytorch_dense.torch} (best of ${by} threads): ${r.dense_vs_pytorch.toFixed(3)}`);
  } else if (r.pytorch_note) lines.push(`dense / PyTorch: ${r.pytorch_note}`);
  return lines.join('\n');
}

// ---- bench all ----

/** The layer measurements of `bench all`: the issues' targets (PEER at 128^2 and 1024^2) and the baselines. */
export const BENCH_ALL_LAYERS: { label: string; args: string[]; large?: boolean }[] = [
  { label: 'peer 128^2', args: ['--layer', 'peer', '--experts', String(128 * 128), '--heads', '8', '--topk', '16', '--dim-key', '128'] },
  { label: 'peer 1024^2', args: ['--layer', 'peer', '--experts', String(1024 * 1024), '--heads', '8', '--topk', '16', '--dim-key', '128'], large: true },
  { label: 'dense', args: ['--layer', 'dense'] },
  { label: 'moe', args: ['--layer', 'moe'] },
  { label: 'moe-ec', args: ['--layer', 'moe-ec'] },
  { label: 'pkm 1024^2', args: ['--layer', 'pkm'], large: true },
];

export interface BenchAllOptions {
  /** Skip the 1024^2-table layers (several GiB and minutes). */
  skipLarge?: boolean;
  trainSteps?: number;
  backend?: string;
  /** Threads of the wasm engine in every measurement (default every core). */
  threads?: number;
  json?: boolean;
  /** Also write the JSON here. */
  out?: string;
  log?: (line: string) => void;
}

export async function benchAllCommand(options: BenchAllOptions, print: (text: string) => void = (t) => process.stdout.write(t)) {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cli = defaultCli();
  const common = [
    '--dim', '256', '--tokens', '512', '--steps', '5', '--json',
    ...(options.backend ? ['--backend', options.backend] : []),
    ...(options.threads ? ['--threads', String(options.threads)] : []),
  ];
  const layers: (BenchLayerResult & { label: string })[] = [];
  for (const spec of BENCH_ALL_LAYERS) {
    if (spec.large && options.skipLarge) continue;
    log(`bench layer: ${spec.label}`);
    const r = await runChild(cli, ['bench', 'layer', ...spec.args, ...common]);
    if (r.code !== 0) throw new UsageError(`bench all: bench layer ${spec.label} failed (exit ${r.code}): ${lastLine(r.stderr)}`, 1);
    layers.push({ label: spec.label, ...(JSON.parse(lastLine(r.stdout)) as BenchLayerResult) });
  }
  const train = await benchTrainCommand({ steps: options.trainSteps, backend: options.backend, threads: options.threads, json: false, log }, () => {});
  const result = { layers, train };
  if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  if (options.json) print(`${JSON.stringify(result)}\n`);
  else {
    const header = `${'layer'.padEnd(12)} ${'ms/step'.padStart(8)} ${'cpu ms'.padStart(8)} ${'tokens/s'.padStart(9)} ${'FLOPs/token'.padStart(12)} ${'active params'.padStart(14)} ${'peak RSS'.padStart(9)}`;
    const rows = layers.map(
      (l) =>
        `${l.label.padEnd(12)} ${l.ms_per_step_median.toFixed(1).padStart(8)} ${l.cpu_ms_per_step_median.toFixed(1).padStart(8)} ${Math.round(l.tokens_per_second).toLocaleString('en-US').padStart(9)} ` +
        `${l.flops_per_token.toLocaleString('en-US').padStart(12)} ${l.active_params_per_token.toLocaleString('en-US').padStart(14)} ${`${(l.peak_rss_bytes / 2 ** 30).toFixed(2)}G`.padStart(9)}`,
    );
    print(`layer step, d = 256, 512 tokens, median of 5 steps, backend ${layers[0]?.backend ?? train.backend}\n${header}\n${rows.join('\n')}\n\nend-to-end training\n${formatTrainBench(train)}\n`);
  }
  return result;
}
