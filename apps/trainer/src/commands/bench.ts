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

/** The layers `bench layer` times, named as in the model config (`ffw.kind`). */
export const BENCH_LAYERS = ['peer', 'dense', 'moe', 'moe-ec', 'pkm'] as const;
export type BenchLayerKind = (typeof BENCH_LAYERS)[number];

/** Old `--layer` spellings, still accepted with a warning on stderr: `ffw` was the dense FFW's name here only. */
const DEPRECATED_BENCH_LAYERS: Record<string, BenchLayerKind> = { ffw: 'dense' };

/** PyTorch (OpenBLAS, one core of the reference machine) on the dense preset's model: tokens/s. */
export const PYTORCH_DENSE_TOKENS_PER_SECOND = 5300;

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

export async function startBackend(requested: string | undefined): Promise<string> {
  return (await startEngine(requested)).backend;
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
  await startBackend(options.backend);
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
  json?: boolean;
  cli?: string;
  log?: (line: string) => void;
}

export interface PresetThroughput {
  preset: string;
  ffw: string;
  steps: number;
  /** Median tokens/s over the logged windows after the first (the first holds kernel warm-up). */
  tokens_per_second: number;
  ms_per_step: number;
  /** Median model FLOPs utilization over the same windows (null when unmeasured). */
  mfu: number | null;
  params_total: number;
  params_active_per_token: number;
  flops_per_token: number;
  backend: string;
}

export interface BenchTrainResult {
  benchmark: 'train';
  backend: string;
  presets: Record<string, PresetThroughput>;
  /** PEER preset tokens/s over dense preset tokens/s (target >= 0.8). */
  peer_dense_tokens_per_second_ratio: number | null;
  pytorch_dense_tokens_per_second: number;
  /** Dense preset tokens/s over PyTorch's on the same model. */
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

export async function benchTrainCommand(options: BenchTrainOptions, print: (text: string) => void = (t) => process.stdout.write(t)): Promise<BenchTrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const presets = options.presets ?? ['dense', 'peer'];
  const steps = options.steps ?? 30;
  if (!Number.isInteger(steps) || steps < 10) throw new UsageError(`bench train: --steps must be an integer >= 10 (the first 5 are warm-up), got ${steps}`);
  const cli = options.cli ?? defaultCli();
  const tmp = mkdtempSync(join(tmpdir(), 'peer-bench-train-'));
  const out: Record<string, PresetThroughput> = {};
  try {
    for (const preset of presets) {
      const dir = join(tmp, preset);
      const args = ['train', '--preset', preset, '--steps', String(steps), '--out', dir];
      for (const s of ['train.evalEvery=0', 'train.finalEvalBatches=1', 'train.logEvery=5', 'train.checkpointEvery=0']) args.push('--set', s);
      if (options.backend) args.push('--backend', options.backend);
      log(`bench train: ${preset}, ${steps} steps`);
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
      out[preset] = {
        preset,
        ffw: summary.ffw,
        steps,
        tokens_per_second: Math.round(tps * 10) / 10,
        ms_per_step: Math.round(((record.derived.tokensPerStep * 1000) / tps) * 10) / 10,
        mfu: mfus.length ? Math.round(median(mfus) * 1000) / 1000 : null,
        params_total: summary.params_total,
        params_active_per_token: summary.params_active_per_token,
        flops_per_token: summary.flops_per_token,
        backend: summary.backend,
      };
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const dense = Object.values(out).find((p) => p.ffw === 'dense');
  const peer = Object.values(out).find((p) => p.ffw === 'peer');
  const result: BenchTrainResult = {
    benchmark: 'train',
    backend: Object.values(out)[0]?.backend ?? 'unknown',
    presets: out,
    peer_dense_tokens_per_second_ratio: dense && peer ? Math.round((peer.tokens_per_second / dense.tokens_per_second) * 1000) / 1000 : null,
    pytorch_dense_tokens_per_second: PYTORCH_DENSE_TOKENS_PER_SECOND,
    dense_vs_pytorch: dense ? Math.round((dense.tokens_per_second / PYTORCH_DENSE_TOKENS_PER_SECOND) * 1000) / 1000 : null,
  };
  if (options.json) print(`${JSON.stringify(result)}\n`);
  else print(`${formatTrainBench(result)}\n`);
  return result;
}

export function formatTrainBench(r: BenchTrainResult): string {
  const lines = Object.values(r.presets).map(
    (p) =>
      `${p.preset.padEnd(8)} ${p.ffw.padEnd(6)} ${Math.round(p.tokens_per_second).toLocaleString('en-US').padStart(7)} tokens/s  ` +
      `${p.ms_per_step.toFixed(0).padStart(6)} ms/step  MFU ${p.mfu === null ? 'n/a' : `${(100 * p.mfu).toFixed(1)}%`}`,
  );
  if (r.peer_dense_tokens_per_second_ratio !== null) lines.push(`PEER / dense tokens/s: ${r.peer_dense_tokens_per_second_ratio.toFixed(3)} (target >= 0.8)`);
  if (r.dense_vs_pytorch !== null) lines.push(`dense / PyTorch (${r.pytorch_dense_tokens_per_second} tokens/s): ${r.dense_vs_pytorch.toFixed(3)}`);
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
  json?: boolean;
  /** Also write the JSON here. */
  out?: string;
  log?: (line: string) => void;
}

export async function benchAllCommand(options: BenchAllOptions, print: (text: string) => void = (t) => process.stdout.write(t)) {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cli = defaultCli();
  const common = ['--dim', '256', '--tokens', '512', '--steps', '5', '--json', ...(options.backend ? ['--backend', options.backend] : [])];
  const layers: (BenchLayerResult & { label: string })[] = [];
  for (const spec of BENCH_ALL_LAYERS) {
    if (spec.large && options.skipLarge) continue;
    log(`bench layer: ${spec.label}`);
    const r = await runChild(cli, ['bench', 'layer', ...spec.args, ...common]);
    if (r.code !== 0) throw new UsageError(`bench all: bench layer ${spec.label} failed (exit ${r.code}): ${lastLine(r.stderr)}`, 1);
    layers.push({ label: spec.label, ...(JSON.parse(lastLine(r.stdout)) as BenchLayerResult) });
  }
  const train = await benchTrainCommand({ steps: options.trainSteps, backend: options.backend, json: false, log }, () => {});
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
